package host

import (
	"context"
	"fmt"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// A task's life on its owning host:
//
//	          submit
//	            │
//	            ▼
//	    ┌──────────────┐  an argument failed   ┌────────┐
//	    │ pending_args │──────────────────────►│ failed │
//	    └──────┬───────┘                       └────────┘
//	           │ every ObjectRef argument ready     ▲
//	           ▼                                    │ infeasible
//	  ┌───────────────────┐─────────────────────────┘
//	  │ pending_resources │ queued in the scheduler
//	  └────────┬──────────┘
//	           │ resources reserved
//	           ▼
//	    ┌────────────┐
//	    │ scheduled  │ waiting for an idle worker process
//	    └─────┬──────┘
//	          │ Exec sent
//	          ▼
//	    ┌───────────┐ Get/Wait: CPU released, taken back after
//	    │  running  │◄──────────────┐
//	    └─────┬─────┘───────────────┘
//	          │ Done / trap / worker died
//	          ▼
//	finished │ failed
//
// cancel moves any state before finished/failed to cancelled: a queued task
// never runs; a running one sees its blocking calls end (or, with force,
// its worker killed).
type taskState uint8

const (
	statePendingArgs taskState = iota
	statePendingResources
	stateScheduled
	stateRunning
	stateFinished
	stateFailed
	stateCancelled
)

func (s taskState) String() string {
	return [...]string{"pending_args", "pending_resources", "scheduled", "running", "finished", "failed", "cancelled"}[s]
}

func (s taskState) terminal() bool { return s >= stateFinished }

type task struct {
	id         ids.TaskID
	job        *job
	mod        *module
	kind       abi.Kind
	function   string
	args       []abi.Arg
	numReturns int
	req        scheduler.Resources

	// Guarded by Host.mu.
	state     taskState
	attempt   uint32
	worker    *workerProc
	depsLeft  int
	holding   bool // holds req (false while blocked in Get/Wait)
	cancelled bool
	forced    bool
	cancelCh  chan struct{}
	stderr    []byte // the tail of the guest's stderr, for trap messages
	submitted time.Time
}

// returns are the ObjectIDs of t's results.
func (t *task) returns() []ids.ObjectID {
	out := make([]ids.ObjectID, t.numReturns)
	for i := range out {
		out[i] = t.id.Return(i)
	}
	return out
}

// taskError builds the error value every return of t gets when it fails.
func (h *Host) taskError(t *task, kind abi.ErrorKind, msg string) *abi.TaskError {
	return &abi.TaskError{Kind: kind, TaskID: t.id.String(), Function: t.displayName(), Host: h.cfg.ID, Attempt: t.attempt, Message: msg}
}

func (t *task) displayName() string {
	switch t.kind {
	case abi.KindMain:
		return "main"
	case abi.KindDescribe:
		return "describe"
	}
	return t.function
}

// submit registers t and starts resolving its arguments. Submitting a task
// ID twice is a no-op: a retried parent submits its children again.
func (h *Host) submit(ctx context.Context, t *task) {
	t.cancelCh = make(chan struct{})
	t.submitted = time.Now()
	for _, id := range t.returns() {
		h.objs.expect(id, t.id)
	}
	var deps []ids.ObjectID
	seen := map[ids.ObjectID]bool{}
	for _, a := range t.args {
		if a.IsRef && !seen[a.Ref.ID] {
			seen[a.Ref.ID] = true
			deps = append(deps, a.Ref.ID)
		}
	}
	h.mu.Lock()
	if _, dup := h.tasks[t.id]; dup || h.closed {
		h.mu.Unlock()
		return
	}
	h.tasks[t.id] = t
	t.state = statePendingArgs
	t.depsLeft = len(deps)
	h.mu.Unlock()
	if len(deps) == 0 {
		h.enqueue(t)
		return
	}
	for _, id := range deps {
		err := h.objs.onReady(ctx, id, func(v abi.Value) { h.depReady(t, v) })
		if err != nil {
			h.fail(t, h.taskError(t, abi.ErrorBadRequest, fmt.Sprintf("argument %s: %v", id, err)))
			return
		}
	}
}

func (h *Host) depReady(t *task, v abi.Value) {
	if v.Codec == abi.CodecError {
		cause := v
		if cause.Data == nil {
			// A large error value is impossible in practice, but read it if so.
			cause, _ = h.objs.value(context.Background(), t.id.Return(0))
		}
		h.fail(t, &abi.TaskError{Kind: abi.ErrorDependency, TaskID: t.id.String(), Function: t.displayName(),
			Host: h.cfg.ID, Message: "an argument failed", Cause: abi.DecodeTaskError(cause.Data)})
		return
	}
	h.mu.Lock()
	if t.state != statePendingArgs {
		h.mu.Unlock()
		return
	}
	t.depsLeft--
	ready := t.depsLeft == 0
	h.mu.Unlock()
	if ready {
		h.enqueue(t)
	}
}

func (h *Host) enqueue(t *task) {
	h.mu.Lock()
	if t.state != statePendingArgs {
		h.mu.Unlock()
		return
	}
	t.state = statePendingResources
	if err := h.sched.Enqueue(t.id, t.req, t); err != nil {
		h.mu.Unlock()
		h.fail(t, h.taskError(t, abi.ErrorInfeasible, err.Error()))
		return
	}
	starts := h.dispatchLocked()
	h.mu.Unlock()
	h.start(starts)
}

// assignment is a task paired with the worker that will run it.
type assignment struct {
	t *task
	w *workerProc
}

// dispatchLocked moves tasks whose resources are free to idle workers and
// starts workers for the rest. The Exec frames are sent by start, after the
// lock is released.
func (h *Host) dispatchLocked() []assignment {
	for {
		it, ok := h.sched.Next()
		if !ok {
			break
		}
		t := it.Value
		t.state = stateScheduled
		t.holding = true
		h.needWorker = append(h.needWorker, t)
	}
	var out []assignment
	for len(h.needWorker) > 0 && len(h.idle) > 0 {
		t := h.needWorker[0]
		h.needWorker = h.needWorker[1:]
		w := h.idle[len(h.idle)-1]
		h.idle = h.idle[:len(h.idle)-1]
		t.state = stateRunning
		t.worker = w
		w.task = t
		out = append(out, assignment{t, w})
	}
	for missing := len(h.needWorker) - h.starting; missing > 0 && len(h.workers)+h.starting < h.cfg.MaxWorkers; missing-- {
		h.startWorkerLocked()
	}
	// Keep one spare worker warm, so the next task (or a driver, which holds
	// no CPU) does not wait for a process to start. The reaper stops spares
	// that stay idle.
	if len(h.idle) == 0 && h.starting == 0 && !h.closed && len(h.workers) < h.cfg.MaxWorkers {
		h.startWorkerLocked()
	}
	return out
}

// start sends each assignment's Exec to its worker.
func (h *Host) start(as []assignment) {
	for _, a := range as {
		if err := h.exec(a.t, a.w); err != nil {
			h.finishWorker(a.w, a.t, h.taskError(a.t, abi.ErrorHost, err.Error()), nil)
		}
	}
}

func (h *Host) exec(t *task, w *workerProc) error {
	inv := abi.Invocation{Kind: t.kind, Task: t.id, Attempt: t.attempt, Owner: h.addr, Function: t.function, Args: make([]abi.Value, len(t.args))}
	for i, a := range t.args {
		if !a.IsRef {
			inv.Args[i] = a.Value
			continue
		}
		v, err := h.objs.value(context.Background(), a.Ref.ID)
		if err != nil {
			return fmt.Errorf("reading argument %d: %w", i+1, err)
		}
		inv.Args[i] = v
	}
	return w.exec(t, h.mods.path(t.mod), inv.Encode(nil))
}

// fail ends t (in any state before a terminal one) with te as the value of
// each of its returns.
func (h *Host) fail(t *task, te *abi.TaskError) {
	h.mu.Lock()
	if t.state.terminal() {
		h.mu.Unlock()
		return
	}
	h.endLocked(t, stateFailed)
	starts := h.dispatchLocked()
	h.mu.Unlock()
	h.sealAll(t, te.Encode())
	h.start(starts)
}

// endLocked moves t to a terminal state and gives back what it holds.
func (h *Host) endLocked(t *task, s taskState) {
	switch t.state {
	case statePendingResources:
		h.sched.Remove(t.id)
	case stateScheduled:
		for i, q := range h.needWorker {
			if q == t {
				h.needWorker = append(h.needWorker[:i], h.needWorker[i+1:]...)
				break
			}
		}
	}
	if t.holding {
		h.sched.Release(t.req)
		t.holding = false
	}
	if t.cancelled && s == stateFailed {
		s = stateCancelled
	}
	t.state = s
	delete(h.tasks, t.id)
}

func (h *Host) sealAll(t *task, v abi.Value) {
	for _, id := range t.returns() {
		if err := h.objs.seal(context.Background(), id, v); err != nil {
			h.log.Error("sealing a result", "task_id", t.id, "object_id", id, "err", err)
		}
	}
	if t.job != nil && t.kind == abi.KindMain {
		t.job.finish(v)
	}
}

// finishWorker ends the task a worker ran, with either te (a failure) or
// vals (its results), and puts the worker back to use.
func (h *Host) finishWorker(w *workerProc, t *task, te *abi.TaskError, vals []abi.Value) {
	h.mu.Lock()
	if w.task == t {
		w.task = nil
		if !w.dead {
			w.idleSince = time.Now()
			h.idle = append(h.idle, w)
		}
	}
	if t.state.terminal() {
		starts := h.dispatchLocked()
		h.mu.Unlock()
		h.start(starts)
		return
	}
	if t.cancelled {
		// Cancelled while running: even a result that arrives is dropped, so
		// every Get sees the cancel, as the caller asked.
		te = h.taskError(t, abi.ErrorCancelled, "the task was cancelled")
	}
	if te != nil {
		h.endLocked(t, stateFailed)
	} else {
		h.endLocked(t, stateFinished)
	}
	starts := h.dispatchLocked()
	h.mu.Unlock()
	if te != nil {
		h.sealAll(t, te.Encode())
	} else {
		for i, id := range t.returns() {
			if err := h.objs.seal(context.Background(), id, vals[i]); err != nil {
				h.log.Error("sealing a result", "task_id", t.id, "object_id", id, "err", err)
				_ = h.objs.seal(context.Background(), id, h.taskError(t, abi.ErrorHost, err.Error()).Encode())
			}
		}
		if t.job != nil && t.kind == abi.KindMain {
			t.job.finish(abi.Value{})
		}
	}
	h.start(starts)
}

// block releases the CPU of a task that waits in Get or Wait.
func (h *Host) block(t *task) {
	h.mu.Lock()
	if t.state != stateRunning || !t.holding {
		h.mu.Unlock()
		return
	}
	h.sched.Release(t.req)
	t.holding = false
	starts := h.dispatchLocked()
	h.mu.Unlock()
	h.start(starts)
}

// unblock takes the CPU back when the wait ends.
func (h *Host) unblock(t *task) {
	h.mu.Lock()
	if t.state == stateRunning && !t.holding {
		h.sched.Acquire(t.req)
		t.holding = true
	}
	h.mu.Unlock()
}

// cancel cancels the task that makes id.
func (h *Host) cancel(id ids.ObjectID, force bool) error {
	h.mu.Lock()
	t := h.tasks[id.Task()]
	if t == nil {
		h.mu.Unlock()
		if h.objs.known(context.Background(), id) {
			return nil // already done: nothing to cancel
		}
		return fmt.Errorf("%w: %s", ErrTaskNotFound, id.Task())
	}
	if t.cancelled {
		h.mu.Unlock()
		return nil
	}
	t.cancelled = true
	close(t.cancelCh)
	state, w := t.state, t.worker
	if state == stateRunning && force {
		t.forced = true
	}
	h.mu.Unlock()
	switch {
	case state != stateRunning:
		h.fail(t, h.taskError(t, abi.ErrorCancelled, "the task was cancelled before it ran"))
	case force:
		w.kill()
	default:
		w.cancel(t)
	}
	return nil
}
