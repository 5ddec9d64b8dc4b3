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
	"context"
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
	// loop a call, cleared when poll answers idle or the invoke ends.
	serving bool
	calls   map[ids.TaskID]*execution // handed to the instance, not done
	events  []abi.PollEvent
	wake    chan struct{} // cap 1: an event was added
	tags    map[uint32]bool
	idled   bool // poll answered idle during this invoke
}

func newConc() *conc {
	return &conc{calls: map[ids.TaskID]*execution{}, wake: make(chan struct{}, 1), tags: map[uint32]bool{}}
}

// pushLocked adds an event and wakes a poll.
func (c *conc) pushLocked(ev abi.PollEvent) {
	c.events = append(c.events, ev)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// deliver hands an actor call to its instance's serve loop if one runs,
// and reports whether it did. Otherwise the call goes to the run loop and
// starts an invoke (the instance is then serving).
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
	if !c.serving {
		c.serving = true
		return false
	}
	e := w.newExecution(ex, inst)
	c.calls[ex.Task] = e
	c.pushLocked(abi.PollEvent{Kind: abi.EventInvoke, Task: ex.Task, Data: ex.Invocation})
	return true
}

// unserve undoes deliver's hand-over of ex to the run loop when ex cannot
// start an invoke.
func (w *Worker) unserve(ex ipc.Exec) {
	if ex.Actor.IsZero() || ex.ActorCreate {
		return
	}
	w.modMu.Lock()
	inst := w.actors[ex.Actor]
	w.modMu.Unlock()
	if c := inst.concOf(); c != nil {
		c.mu.Lock()
		c.serving = false
		c.mu.Unlock()
	}
}

// newExecution registers a call's execution where cancels find it.
func (w *Worker) newExecution(ex ipc.Exec, inst *instance) *execution {
	e := &execution{task: ex.Task, limits: ex, cancelled: make(chan struct{}), inst: inst}
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
			c.pushLocked(abi.PollEvent{Kind: abi.EventCancel, Task: e.task})
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
	case c.tags[s.Tag]:
		c.mu.Unlock()
		return int64(abi.ErrCodeBadRequest)
	case len(c.tags) >= abi.MaxStarted*max(1, len(c.calls)):
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
	c.tags[s.Tag] = true
	c.mu.Unlock()
	complete := func(code int64, data []byte) {
		c.mu.Lock()
		if c.tags[s.Tag] {
			c.pushLocked(abi.PollEvent{Kind: abi.EventCompletion, Tag: s.Tag, Code: code, Data: data})
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
		r := w.awaitReply(ch, seq)
		if r.Code < 0 {
			complete(r.Code, nil)
			return
		}
		complete(int64(len(r.Payload)), r.Payload)
	}()
	return 0
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
// idle and stops serving (a later call starts a new invoke).
func (c *conc) nextLocked() (abi.PollEvent, bool) {
	if len(c.events) > 0 {
		ev := c.events[0]
		c.events = slices.Delete(c.events, 0, 1)
		switch ev.Kind {
		case abi.EventCompletion:
			delete(c.tags, ev.Tag)
		case abi.EventInvoke:
			if e := c.calls[ev.Task]; e != nil {
				e.given = true
			}
		}
		return ev, true
	}
	if len(c.calls) == 0 {
		c.serving, c.idled = false, true
		clear(c.tags) // completions of ops no call waits for
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
	delete(c.calls, d.Task)
	c.mu.Unlock()
	e.ended = true
	w.unregister(e)
	done := ipc.Done{Task: d.Task, Status: d.Status, Result: append([]byte(nil), d.Result...)}
	w.send(ipc.TypeDone, done.Encode(nil))
	return 0
}

// endServing runs after an invoke on a concurrent instance returned (or
// trapped, fail set): calls the guest was given and did not end fail, and
// calls it was never given run in invokes of their own, in order (a guest
// that does not serve them: an older SDK). It reports the calls to run.
func (w *Worker) endServing(inst *instance, first *execution, fail *ipc.Done) []ipc.Exec {
	c := inst.conc
	c.mu.Lock()
	var left []*execution
	var rerun []ipc.Exec
	for _, ev := range c.events {
		if ev.Kind != abi.EventInvoke {
			continue
		}
		if e := c.calls[ev.Task]; e != nil && !e.given {
			delete(c.calls, ev.Task)
			w.unregister(e)
			if fail != nil {
				left = append(left, e)
			} else {
				rerun = append(rerun, e.limits)
			}
		}
	}
	c.events = nil
	clear(c.tags)
	for task, e := range c.calls {
		if e != first {
			left = append(left, e)
		}
		delete(c.calls, task)
	}
	switch {
	case c.idled:
		// serving was cleared by poll; the read loop may have set it for
		// the next call since.
	case len(rerun) > 0:
		// Still serving: the run loop runs them next.
	default:
		c.serving = false
	}
	c.idled = false
	c.mu.Unlock()
	for _, e := range left {
		w.unregister(e)
		d := ipc.Done{Task: e.task, Kind: abi.ErrorHost, Trap: "the guest returned without a result"}
		if fail != nil {
			d.Kind, d.Trap = fail.Kind, fail.Trap
		}
		w.send(ipc.TypeDone, d.Encode(nil))
	}
	return rerun
}

// runAll runs calls handed to the run loop after a serve loop ended.
func (w *Worker) runAll(ctx context.Context, exs []ipc.Exec) {
	for _, ex := range exs {
		w.execute(ctx, ex)
	}
}
