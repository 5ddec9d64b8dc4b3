//go:build wasip1

package ray

import (
	"context"
	"runtime"
	"sync"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// A concurrent actor's instance (created with MaxConcurrency > 1) runs
// several calls at once (guest-sdk/ABI.md §5, "Concurrent actors"). Each
// call runs on a goroutine; its blocking ops are started with a tag (op
// start) and park the goroutine; the invoke's own goroutine is the pump:
// once the others are parked it polls (op poll) for the next event — a
// started op's completion, a new call, a cancel — and returns when the
// worker says the instance is idle. Each call ends with op done.
//
// Whether the instance serves concurrent calls is learnt once, at the
// first op that needs it: a worker answers -4 (UnknownOp) for an
// instance that does not, or if it predates these ops, and the instance
// then runs its calls one at a time, as any actor.
type concMode uint8

const (
	concUnknown concMode = iota
	concYes
	concNo
)

var pump struct {
	sync.Mutex
	mode    concMode
	tag     uint32
	waiters map[uint32]chan completion
	calls   map[ids.TaskID]*concCall
}

type completion struct {
	code int64
	data []byte
}

func concModeNow() concMode {
	pump.Lock()
	defer pump.Unlock()
	return pump.mode
}

func setConcMode(m concMode) {
	pump.Lock()
	pump.mode = m
	pump.Unlock()
}

// concCall is one call on a concurrent actor's instance.
type concCall struct {
	t      *taskState
	cancel context.CancelFunc
	ctx    context.Context
	fin    chan struct{}
	status abi.Status
}

func concCallOf(t *taskState) *concCall {
	if t == nil {
		return nil
	}
	c, _ := t.call.(*concCall)
	return c
}

func newConcCall(inv *abi.Invocation) *concCall {
	c := &concCall{t: newTaskState(inv), fin: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.t.call = c
	pump.Lock()
	if pump.calls == nil {
		pump.calls = map[ids.TaskID]*concCall{}
	}
	pump.calls[c.t.id] = c
	pump.Unlock()
	return c
}

// run runs the call on the calling goroutine (its own).
func (c *concCall) run(fn func(context.Context) ([]abi.Value, error)) {
	setCurrentCall(c.t)
	defer setCurrentCall(nil)
	defer close(c.fin)
	defer c.cancel()
	defer c.forget()
	c.status = runAs(c.ctx, c.t, fn)
}

// fail ends a call that cannot run, on the calling goroutine (its own).
func (c *concCall) fail(status abi.Status, te *abi.TaskError) {
	setCurrentCall(c.t)
	defer setCurrentCall(nil)
	defer close(c.fin)
	defer c.forget()
	c.status = sendError(c.t, status, te)
}

func (c *concCall) forget() {
	pump.Lock()
	delete(pump.calls, c.t.id)
	pump.Unlock()
}

// end sends the call's Result with op done; false when the instance does
// not serve concurrent calls (the caller then sends op result).
func (c *concCall) end(status abi.Status, res []byte) (bool, error) {
	if concModeNow() == concNo {
		return false, nil
	}
	req := abi.DoneRequest{Task: c.t.id, Status: status, Result: res}
	n, _ := rawCall(abi.OpDone, req.Encode(nil))
	if n == int64(abi.ErrCodeUnknownOp) {
		setConcMode(concNo)
		return false, nil
	}
	setConcMode(concYes)
	if n < 0 {
		return true, codeError(abi.ErrCode(n))
	}
	return true, nil
}

// blocking reports whether op waits for something (then it is started
// and its goroutine parks until the completion).
func blocking(op abi.Op) bool {
	switch op {
	case abi.OpGet, abi.OpWait, abi.OpNext, abi.OpYield, abi.OpGetActor, abi.OpSleep:
		return true
	}
	return false
}

// do makes a host call for the call; ok false: make it directly.
func (c *concCall) do(op abi.Op, req []byte) (_ []byte, _ error, ok bool) {
	mode := concModeNow()
	if mode == concNo || (mode == concUnknown && !blocking(op)) {
		return nil, nil, false
	}
	if !blocking(op) {
		b, err := directCall(abi.OpStart, (&abi.StartRequest{Task: c.t.id, Op: op, Payload: req}).Encode(nil))
		return b, err, true
	}
	ch := make(chan completion, 1)
	pump.Lock()
	pump.tag++
	tag := pump.tag
	if pump.waiters == nil {
		pump.waiters = map[uint32]chan completion{}
	}
	pump.waiters[tag] = ch
	pump.Unlock()
	n, _ := rawCall(abi.OpStart, (&abi.StartRequest{Task: c.t.id, Tag: tag, Op: op, Payload: req}).Encode(nil))
	if n < 0 {
		pump.Lock()
		delete(pump.waiters, tag)
		pump.Unlock()
		if n == int64(abi.ErrCodeUnknownOp) {
			setConcMode(concNo)
			return nil, nil, false
		}
		return nil, codeError(abi.ErrCode(n)), true
	}
	setConcMode(concYes)
	r := <-ch // parked until the pump polls the completion
	if r.code < 0 {
		return nil, codeError(abi.ErrCode(r.code)), true
	}
	if len(r.data) == 0 {
		return nil, nil, true
	}
	return r.data, nil, true
}

// serveCalls runs an actor call on a goroutine and pumps events until the
// instance is idle; ok false: the instance learnt before that it runs
// calls one at a time, and the caller runs this one as usual.
func serveCalls(inv *abi.Invocation, fn func(context.Context) ([]abi.Value, error)) (abi.Status, bool) {
	if concModeNow() == concNo {
		return 0, false
	}
	first := newConcCall(inv)
	setCurrent(first.t) // goroutines a method starts act for this call
	defer setCurrent(nil)
	go first.run(fn)
	var timeout int64
	for {
		runtime.Gosched()
		runtime.Gosched()
		mode := concModeNow()
		if mode == concUnknown {
			select {
			case <-first.fin:
				mode = concModeNow() // its end decided
			default:
				// Parked outside the SDK: does the instance serve others?
				n, b := rawCall(abi.OpPoll, (&abi.PollRequest{}).Encode(nil))
				if n == int64(abi.ErrCodeUnknownOp) {
					setConcMode(concNo)
					mode = concNo
				} else {
					setConcMode(concYes)
					if n >= 0 && !handleEvent(b) {
						return abi.StatusOK, true
					}
					continue
				}
			}
		}
		if mode != concYes {
			<-first.fin // one call at a time: it runs to its end, as any call
			return first.status, true
		}
		n, b := rawCall(abi.OpPoll, (&abi.PollRequest{TimeoutNs: timeout}).Encode(nil))
		if n < 0 {
			return abi.StatusError, true // the worker is going away
		}
		var ev abi.PollEvent
		if ev.Decode(b) == nil && ev.Kind == abi.EventTimeout {
			// Nothing yet: wait longer, but not so long that a Go timer of
			// a parked goroutine (time.After, a context deadline) is late
			// by much — the instance is blocked while it polls.
			timeout = min(max(2*timeout, int64(pollStep)), int64(pollCap))
			continue
		}
		timeout = 0
		if !handleEvent(b) {
			return abi.StatusOK, true
		}
	}
}

const (
	pollStep = 500_000    // ns
	pollCap  = 20_000_000 // ns
)

// handleEvent acts on one polled event; false: the instance is idle.
func handleEvent(b []byte) bool {
	var ev abi.PollEvent
	if ev.Decode(b) != nil {
		return true
	}
	switch ev.Kind {
	case abi.EventIdle:
		return false
	case abi.EventCompletion:
		pump.Lock()
		ch := pump.waiters[ev.Tag]
		delete(pump.waiters, ev.Tag)
		pump.Unlock()
		if ch != nil {
			ch <- completion{code: ev.Code, data: ev.Data}
		}
	case abi.EventCancel:
		pump.Lock()
		c := pump.calls[ev.Task]
		pump.Unlock()
		if c != nil {
			c.cancel()
		}
	case abi.EventInvoke:
		var inv abi.Invocation
		if err := inv.Decode(ev.Data); err != nil {
			inv.Task = ev.Task
			go newConcCall(&inv).fail(abi.StatusBadRequest, &abi.TaskError{Kind: abi.ErrorBadRequest, Message: err.Error()})
			return true
		}
		c := newConcCall(&inv)
		fn, te := callOf(&inv)
		if te != nil {
			go c.fail(abi.StatusBadRequest, te)
			return true
		}
		go c.run(fn)
	}
	return true
}

// baseContext: a call that is not a concurrent actor's cannot be
// interrupted while it runs; its blocking ops end with ErrTaskCancelled.
func baseContext(ids.TaskID) (context.Context, func()) { return context.Background(), func() {} }
