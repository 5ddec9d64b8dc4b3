// This file serves concurrent actors (guest-sdk/ABI.md §5, "Concurrent
// actors"): an actor created with max_concurrency > 1 keeps one instance,
// and while an invoke runs on it (the guest's serve loop) later calls are
// handed to the guest as poll events instead of new invokes. The guest
// starts blocking ops with a tag (op start) and learns their outcome from
// poll; each call ends with op done, which sends that call's Done frame.
//
// One call's life on a concurrent instance:
//
//	Exec ─► (instance idle) ─► invoke ─► … done ─► Done frame
//	Exec ─► (instance serving) ─► event invoke ─► polled (given) ─► … done ─► Done frame
//	      (the guest returns from invoke without polling it: run by the next invoke)

package worker

import (
	"slices"
	"sync"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/ipc"
)

// conc is the serving state of a concurrent actor's instance.
type conc struct {
	mu sync.Mutex
	// serving: an invoke runs (or is about to run) on the instance, so a
	// new call goes to events. Set by the read loop when it hands the run
	// loop a call, cleared when the invoke ends with nothing left to run.
	serving bool
	// idled: poll answered idle during this invoke, which is now returning;
	// calls that arrive meanwhile wait in queue for the next invoke, in
	// order (an event pushed now would never be polled, and a call sent to
	// the run loop could be overtaken by the calls after it).
	idled  bool
	queue  []ipc.Exec
	calls  map[ids.TaskID]*execution // handed to the instance, not done
	events []event
	wake   chan struct{} // cap 1: an event was added
	// tags are the blocking ops started and not yet polled, each with its
	// start: a completion counts only for the start that made it, so a tag
	// reused after an op was dropped never receives a stale outcome.
	tags map[uint32]*started
	// served is how many calls the running invoke was given (its first
	// included): the output budget of the invoke is that many calls'.
	served int
}

// event is a poll event waiting to be polled; a completion's start.
type event struct {
	abi.PollEvent
	st *started
}

// started is one blocking op in flight, for call e.
type started struct {
	tag uint32
	e   *execution
}

func newConc() *conc {
	return &conc{calls: map[ids.TaskID]*execution{}, wake: make(chan struct{}, 1), tags: map[uint32]*started{}}
}

// pushLocked adds an event and wakes a poll.
func (c *conc) pushLocked(ev event) {
	c.events = append(c.events, ev)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// offerLocked hands call e to the running (or next) invoke as an event;
// a call already cancelled is followed by its cancel.
func (c *conc) offerLocked(e *execution) {
	c.calls[e.task] = e
	c.pushLocked(event{PollEvent: abi.PollEvent{Kind: abi.EventInvoke, Task: e.task, Data: e.limits.Invocation}})
	if e.isCancelled() {
		c.pushLocked(event{PollEvent: abi.PollEvent{Kind: abi.EventCancel, Task: e.task}})
	}
}

// endCallLocked forgets call e: it is out of the instance's calls, its
// started ops no longer count or complete, and what waits for them on its
// behalf ends (e.end, once the lock is released).
func (c *conc) endCallLocked(e *execution) {
	if c.calls[e.task] == e {
		delete(c.calls, e.task)
	}
	for tag, st := range c.tags {
		if st.e == e {
			delete(c.tags, tag)
		}
	}
	e.inflight = 0
	c.events = slices.DeleteFunc(c.events, func(ev event) bool {
		return ev.st != nil && ev.st.e == e || ev.Kind == abi.EventCancel && ev.Task == e.task
	})
}

// deliver hands an actor call to its instance's serve loop if one runs,
// and reports whether it did (or queued it for the next). Otherwise the
// call goes to the run loop and starts an invoke (the instance is then
// serving).
func (w *Worker) deliver(ex ipc.Exec) bool {
	if ex.Actor.IsZero() || ex.ActorCreate {
		return false
	}
	w.modMu.Lock()
	inst := w.actors[ex.Actor]
	w.modMu.Unlock()
	if inst == nil || inst.conc == nil {
		return false
	}
	c := inst.conc
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case !c.serving:
		c.serving = true
		return false
	case c.idled:
		c.queue = append(c.queue, ex)
		return true
	}
	c.offerLocked(w.newExecution(ex, inst))
	return true
}

// unserve undoes deliver's hand-over of ex to the run loop when ex cannot
// start an invoke (fail says why): the calls offered to the invoke that
// never ran fail the same way.
func (w *Worker) unserve(ex ipc.Exec, fail ipc.Done) {
	if ex.Actor.IsZero() || ex.ActorCreate {
		return
	}
	w.modMu.Lock()
	inst := w.actors[ex.Actor]
	w.modMu.Unlock()
	c := inst.concOf()
	if c == nil {
		return
	}
	c.mu.Lock()
	var lost []ids.TaskID
	for task, e := range c.calls {
		c.endCallLocked(e)
		w.unregister(e)
		e.end()
		lost = append(lost, task)
	}
	for _, q := range c.queue {
		lost = append(lost, q.Task)
	}
	c.queue, c.events, c.serving, c.idled = nil, nil, false, false
	c.mu.Unlock()
	for _, task := range lost {
		d := fail
		d.Task = task
		w.send(ipc.TypeDone, d.Encode(nil))
	}
}

// serveFirst registers e, the call an invoke starts with, as the first
// call the instance serves.
func (w *Worker) serveFirst(inst *instance, e *execution) {
	e.inst, e.given, e.ended = inst, true, make(chan struct{})
	w.curMu.Lock()
	w.current = nil
	w.running[e.task] = e
	w.curMu.Unlock()
	c := inst.conc
	c.mu.Lock()
	c.serving, c.calls[e.task], c.served = true, e, 1
	if e.isCancelled() {
		// Cancelled before it was registered here (an early cancel, one
		// that found it as w.current, a rerun cancelled call): the guest
		// hears of it as of any other call.
		c.pushLocked(event{PollEvent: abi.PollEvent{Kind: abi.EventCancel, Task: e.task}})
	}
	c.mu.Unlock()
}

// newExecution registers a call's execution where cancels find it.
func (w *Worker) newExecution(ex ipc.Exec, inst *instance) *execution {
	e := &execution{task: ex.Task, limits: ex, cancelled: make(chan struct{}), ended: make(chan struct{}), inst: inst}
	w.curMu.Lock()
	w.running[ex.Task] = e
	if w.early[ex.Task] {
		delete(w.early, ex.Task)
		e.cancel()
	}
	w.curMu.Unlock()
	return e
}

func (w *Worker) unregister(e *execution) {
	w.curMu.Lock()
	if w.running[e.task] == e {
		delete(w.running, e.task)
	}
	w.curMu.Unlock()
}

// cancelCall cancels a call of a concurrent instance: its blocking ops end
// with ErrCodeCancelled and the guest hears of it (its context ends).
func (e *execution) cancelCall() {
	e.cancel()
	if c := e.inst.concOf(); c != nil {
		c.mu.Lock()
		if c.calls[e.task] == e {
			c.pushLocked(event{PollEvent: abi.PollEvent{Kind: abi.EventCancel, Task: e.task}})
		}
		c.mu.Unlock()
	}
}

func (inst *instance) concOf() *conc {
	if inst == nil {
		return nil
	}
	return inst.conc
}

// serveConcurrent serves ops start, poll and done.
func (w *Worker) serveConcurrent(inst *instance, op abi.Op, req []byte) int64 {
	switch op {
	case abi.OpStart:
		return w.start(inst, req)
	case abi.OpPoll:
		return w.poll(inst, req)
	case abi.OpDone:
		return w.doneCall(inst, req)
	}
	return int64(abi.ErrCodeUnknownOp)
}

// callLocked returns a call the guest was given and has not ended.
func (c *conc) callLocked(task ids.TaskID) *execution {
	if e := c.calls[task]; e != nil && e.given {
		return e
	}
	return nil
}

// start serves op start: the op runs for the call named in it; a blocking
// one completes later, as an event.
func (w *Worker) start(inst *instance, req []byte) int64 {
	var s abi.StartRequest
	_ = s.Decode(req) // checked by the table
	c := inst.conc
	c.mu.Lock()
	e := c.callLocked(s.Task)
	if e == nil {
		c.mu.Unlock()
		return int64(abi.ErrCodeBadRequest)
	}
	blocking := s.Op.Route() == abi.RouteRoundTrip || s.Op == abi.OpSleep
	if !blocking {
		c.mu.Unlock()
		return w.serveAs(inst, e, s.Op, s.Payload)
	}
	switch {
	case c.tags[s.Tag] != nil:
		c.mu.Unlock()
		return int64(abi.ErrCodeBadRequest)
	case e.inflight >= abi.MaxStarted:
		c.mu.Unlock()
		return int64(abi.ErrCodeTooLarge)
	}
	if abi.CheckRequest(s.Op, s.Payload) != nil {
		c.mu.Unlock()
		return int64(abi.ErrCodeBadRequest)
	}
	if over(s.Payload, e.limit(s.Op.Limit())) {
		c.mu.Unlock()
		return int64(abi.ErrCodeTooLarge)
	}
	st := &started{tag: s.Tag, e: e}
	c.tags[s.Tag] = st
	e.inflight++
	c.mu.Unlock()
	complete := func(code int64, data []byte) {
		c.mu.Lock()
		if c.tags[st.tag] == st {
			c.pushLocked(event{PollEvent: abi.PollEvent{Kind: abi.EventCompletion, Tag: st.tag, Code: code, Data: data}, st: st})
		}
		c.mu.Unlock()
	}
	if s.Op == abi.OpSleep {
		var sl abi.SleepRequest
		_ = sl.Decode(s.Payload)
		go func() {
			t := time.NewTimer(time.Duration(sl.Ns))
			defer t.Stop()
			select {
			case <-t.C:
				complete(0, nil)
			case <-e.cancelled:
				complete(int64(abi.ErrCodeCancelled), nil)
			case <-w.closed:
				complete(int64(abi.ErrCodeHost), nil)
			case <-e.ended: // nobody waits for it any more
			}
		}()
		return 0
	}
	ch, seq, code := w.sendRoundTrip(e, s.Op, s.Payload)
	if code < 0 {
		complete(code, nil)
		return 0
	}
	go func() {
		r := w.awaitReplyFor(e, ch, seq)
		if r.Code < 0 {
			if r.body != nil {
				r.body.release()
			}
			complete(r.Code, nil)
			return
		}
		// The event holds the reply until the guest polls it: a large
		// one is read into the worker's memory now, and let go.
		data, ok := r.whole()
		if !ok {
			complete(int64(abi.ErrCodeHost), nil)
			return
		}
		complete(int64(len(data)), data)
	}()
	return 0
}

// awaitReplyFor waits for the reply to seq, sent for call e, until e ends.
func (w *Worker) awaitReplyFor(e *execution, ch chan reply, seq uint64) reply {
	select {
	case r := <-ch:
		return r
	case <-w.closed:
		return reply{Reply: ipc.Reply{Code: int64(abi.ErrCodeHost)}}
	case <-e.ended:
		w.seqMu.Lock()
		delete(w.pending, seq) // a reply that comes now is dropped
		w.seqMu.Unlock()
		select {
		case r := <-ch: // it came just before (sent under seqMu: nothing comes after)
			if r.body != nil {
				r.body.release()
			}
		default:
		}
		return reply{Reply: ipc.Reply{Code: int64(abi.ErrCodeCancelled)}}
	}
}

// poll serves op poll: the next event, or idle once no call runs (the
// guest's invoke then returns), or timeout.
func (w *Worker) poll(inst *instance, req []byte) int64 {
	var p abi.PollRequest
	_ = p.Decode(req)
	c := inst.conc
	var timeout <-chan time.Time
	if p.TimeoutNs > 0 {
		t := time.NewTimer(time.Duration(p.TimeoutNs))
		defer t.Stop()
		timeout = t.C
	}
	for {
		c.mu.Lock()
		ev, ok := c.nextLocked()
		c.mu.Unlock()
		if ok {
			inst.mailbox = ev.Encode(nil)
			return int64(len(inst.mailbox))
		}
		if p.TimeoutNs == 0 {
			inst.mailbox = (&abi.PollEvent{Kind: abi.EventTimeout}).Encode(nil)
			return int64(len(inst.mailbox))
		}
		select {
		case <-c.wake:
		case <-timeout:
			inst.mailbox = (&abi.PollEvent{Kind: abi.EventTimeout}).Encode(nil)
			return int64(len(inst.mailbox))
		case <-w.closed:
			return int64(abi.ErrCodeHost)
		}
	}
}

// nextLocked takes the next event; with none and no call left it answers
// idle (the invoke must return; later calls wait for the next).
func (c *conc) nextLocked() (abi.PollEvent, bool) {
	if c.idled {
		return abi.PollEvent{Kind: abi.EventIdle}, true
	}
	if len(c.events) > 0 {
		ev := c.events[0]
		c.events = slices.Delete(c.events, 0, 1)
		switch ev.Kind {
		case abi.EventCompletion:
			delete(c.tags, ev.Tag)
			ev.st.e.inflight--
		case abi.EventInvoke:
			if e := c.calls[ev.Task]; e != nil {
				e.given = true
				c.served++
			}
		}
		return ev.PollEvent, true
	}
	if len(c.calls) == 0 {
		c.idled = true
		clear(c.tags) // none left: every call ended
		return abi.PollEvent{Kind: abi.EventIdle}, true
	}
	return abi.PollEvent{}, false
}

// doneCall serves op done: the call's Done frame goes to the host.
func (w *Worker) doneCall(inst *instance, req []byte) int64 {
	var d abi.DoneRequest
	_ = d.Decode(req)
	c := inst.conc
	c.mu.Lock()
	e := c.callLocked(d.Task)
	if e == nil {
		c.mu.Unlock()
		return int64(abi.ErrCodeBadRequest)
	}
	if over(req, e.limit(abi.LimitResult)) {
		c.mu.Unlock()
		return int64(abi.ErrCodeTooLarge)
	}
	c.endCallLocked(e)
	e.done = true
	c.mu.Unlock()
	e.end()
	w.unregister(e)
	done := ipc.Done{Task: d.Task, Status: d.Status, Result: append([]byte(nil), d.Result...)}
	w.send(ipc.TypeDone, done.Encode(nil))
	return 0
}

// endServing runs after an invoke on a concurrent instance returned (or
// trapped, fail set): calls the guest was given and did not end fail;
// calls it was never given, and calls that came after it answered idle,
// run next, in order: the first in a new invoke (returned), the others
// offered to it (a guest that does not serve them, an older SDK, runs
// them one invoke each). With fail set, those fail too.
func (w *Worker) endServing(inst *instance, first *execution, fail *ipc.Done) *ipc.Exec {
	c := inst.conc
	c.mu.Lock()
	var left []*execution
	var rerun []ipc.Exec
	var lost []ids.TaskID
	for _, ev := range c.events {
		if ev.Kind != abi.EventInvoke {
			continue
		}
		e := c.calls[ev.Task]
		if e == nil || e.given {
			continue
		}
		c.endCallLocked(e)
		w.unregister(e)
		e.end()
		switch {
		case fail != nil:
			lost = append(lost, e.task)
		default:
			if e.isCancelled() {
				w.curMu.Lock()
				w.early[e.task] = true // its next execution starts cancelled
				w.curMu.Unlock()
			}
			rerun = append(rerun, e.limits)
		}
	}
	for _, q := range c.queue {
		if fail != nil {
			lost = append(lost, q.Task)
		} else {
			rerun = append(rerun, q)
		}
	}
	c.queue = nil
	for _, e := range c.calls {
		c.endCallLocked(e)
		if e != first {
			left = append(left, e)
		}
	}
	c.endCallLocked(first)
	c.events, c.idled, c.served = nil, false, 0
	clear(c.tags)
	var next *ipc.Exec
	if len(rerun) > 0 {
		// Still serving: the run loop starts the next invoke with the
		// first; the others (and calls that come meanwhile) are its events.
		next = &rerun[0]
		for _, ex := range rerun[1:] {
			c.offerLocked(w.newExecution(ex, inst))
		}
		c.serving = true
	} else {
		c.serving = false
	}
	c.mu.Unlock()
	first.end()
	for _, e := range left {
		w.unregister(e)
		e.end()
		d := ipc.Done{Task: e.task, Kind: abi.ErrorHost, Trap: "the guest returned without a result"}
		if fail != nil {
			d.Kind, d.Trap = fail.Kind, fail.Trap
		}
		w.send(ipc.TypeDone, d.Encode(nil))
	}
	for _, task := range lost {
		d := ipc.Done{Task: task, Kind: fail.Kind, Trap: fail.Trap}
		w.send(ipc.TypeDone, d.Encode(nil))
	}
	return next
}
