package owner

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/rayhost/rayhost/host/internal/lifecycle"
	"github.com/rayhost/rayhost/host/internal/refcount"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/clock"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/ipc"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// A task's life is the state machine of host/internal/lifecycle (its
// package doc draws the diagram); these names keep the host's code short.
type taskState = lifecycle.State

const (
	statePendingArgs      = lifecycle.PendingArgs
	statePendingResources = lifecycle.PendingResources
	stateScheduled        = lifecycle.Scheduled
	stateRunning          = lifecycle.Running
	stateFinished         = lifecycle.Finished
	stateFailed           = lifecycle.Failed
	stateCancelled        = lifecycle.Cancelled
	stateRetried          = lifecycle.Retried
)

var stateNames = [...]string{"pending_args", "pending_resources", "scheduled", "running", "finished", "failed", "cancelled", "retried"}

type task struct {
	// grantsNote describes grants for events, made once (see record).
	grantsNote string
	id         ids.TaskID
	parent     ids.TaskID
	job        *job
	mod        *module
	kind       abi.Kind
	function   string
	args       []abi.Arg
	numReturns int
	req        scheduler.Resources
	maxRetries int32
	retry      abi.RetryMode
	retryOn    []string
	events     bool
	gen        *generator // set for generator tasks
	limits     abi.Limits
	memStarved bool // failed: its memory could never fit GuestMemoryBudget
	grants     abi.Grants
	depth      int                 // 0 for a task a client submitted
	actor      *actor              // for KindActorCreate and KindActorCall
	tree       *tree               // the tree of tasks this one belongs to
	strategy   scheduler.Placement // where it may run in a cluster (no locality)
	// foreign is set on the host that runs the task for another (its
	// owner): the link back to the owner.
	foreign *foreign
	// holder holds the task's returns (refs.go): the submitting attempt,
	// its actor, or the API caller's session or anonymous holder
	// (sessions.go); "" for a task whose refs are not counted.
	holder refcount.Holder

	// Guarded by Host.mu.
	// lc is the task's lifecycle state: state, attempt, arguments left,
	// resources held, cancel, timeout and ABI violation.
	lc       lifecycle.Task
	worker   *workerProc
	cancelCh chan struct{}
	// callEnd, for a running call of a concurrent actor, is closed when the
	// call ends on its worker (workerProc.endCallLocked): the ops the call
	// started and never saw complete stop waiting then.
	callEnd  chan struct{}
	children []ids.TaskID
	stderr   []byte      // the tail of the guest's stderr, for trap messages
	timer    clock.Timer // ends an attempt that runs past its timeout
	yields   int         // items yielded by this attempt, on the executing host
	fetched  bool        // an actor call's arguments were brought here first
	// kids checks the child IDs the attempt kidsAttempt (on worker
	// kidsWorker) submits; violation is the first rule the guest broke,
	// which fails the task when it ends.
	kids        *ids.Children
	kidsAttempt uint32
	kidsWorker  *workerProc
	// cancelRefused: a cancel from this task's guest was refused (noted
	// once).
	cancelRefused bool
	// waited is 1 + the attempt that made a round trip to the host (a Get,
	// a Wait): no task is queued behind it (pipeline.go).
	waited uint32
	// stealing: it was queued behind another task and asked back from its
	// worker (ipc.TypeUnqueue, pipeline.go).
	stealing bool
	// sent: its Exec was written to its worker (set without Owner.mu, by
	// start): a task is queued behind it only then, so that the worker
	// gets their Execs in the order it is to run them.
	sent atomic.Bool
	// ranAt is when its attempt became its worker's running task, for the
	// pipeline's run-time estimates (pipeline.go).
	ranAt time.Time
}

// addChild adds id to t's children (for a recursive cancel). When the
// list is full it first drops the children that have ended (not in live,
// the task table), so that a long-lived parent — a driver looping over
// tasks — keeps a list as long as its live children, not one entry for
// every task it ever submitted. The caller holds Host.mu.
func (t *task) addChild(id ids.TaskID, live map[ids.TaskID]*task) {
	if len(t.children) == cap(t.children) && len(t.children) > 0 {
		t.children = slices.DeleteFunc(t.children, func(c ids.TaskID) bool { return live[c] == nil })
		// At least as many appends as live children before the next scan:
		// amortised O(1) however many of them are live.
		t.children = slices.Grow(t.children, len(t.children))
	}
	t.children = append(t.children, id)
}

// tree counts the unfinished tasks of one task tree (guarded by Host.mu).
type tree struct{ live int }

// generator is the state of a generator task's stream. Item i is the object
// Return(i); exactly one item past the last is always expected, so a
// consumer can wait for it; the end of the stream is sealed there as an
// end_of_stream marker.
type generator struct {
	backpressure int
	count        int // items sealed
	consumed     int // items handed to the consumer
	seen         int // items yielded by the current attempt
	wake         chan struct{}
}

// returns are the ObjectIDs of t's results (none for a generator).
func (t *task) returns() []ids.ObjectID {
	out := make([]ids.ObjectID, t.numReturns)
	for i := range out {
		out[i] = t.id.Return(i)
	}
	return out
}

// taskError builds the error value every return of t gets when it fails.
func (h *Owner) taskError(t *task, kind abi.ErrorKind, msg string) *abi.TaskError {
	return &abi.TaskError{Kind: kind, TaskID: t.id.String(), Function: t.displayName(), Host: h.cfg.ID, Attempt: t.lc.Attempt + 1, Message: msg}
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
// ID twice is a no-op: a guest built before ids.ChildOf submits its
// children again, under the same IDs, when it is retried.
func (h *Owner) submit(ctx context.Context, t *task) {
	h.refs.submitted(t)
	h.acts.counted(t)
	t.cancelCh = make(chan struct{})
	if t.gen != nil {
		t.gen.wake = make(chan struct{}, 1)
		h.objs.Expect(t.id.Return(0), t.id)
		h.objs.Expect(t.id.Completion(), t.id) // Ray's ObjectRefGenerator.completed()
	}
	for _, id := range t.returns() {
		h.objs.Expect(id, t.id)
	}
	t.lc.Policy = t.policy()
	h.mu.Lock()
	if _, dup := h.tasks[t.id]; dup || h.closed {
		h.mu.Unlock()
		return
	}
	if t.tree == nil {
		t.tree = &tree{}
	}
	if live := t.tree.live; live >= h.cfg.MaxTreeTasks {
		h.mu.Unlock()
		h.submitFailed(t, h.taskError(t, abi.ErrorLimit, fmt.Sprintf(
			"its task tree has %d unfinished tasks, the limit is %d (MaxTreeTasks)", live, h.cfg.MaxTreeTasks)))
		return
	}
	t.tree.live++
	h.tasks[t.id] = t
	t.job.counted(t, statePendingArgs)
	if p := h.tasks[t.parent]; p != nil {
		p.addChild(t.id, h.tasks)
	}
	if !t.grants.Empty() {
		t.grantsNote = grantsNote(t.grants)
	}
	later := h.stepCtxLocked(ctx, t, lifecycle.Submit{Note: t.grantsNote})
	if t.grantsNote != "" {
		// The audit trail outside the event ring.
		h.log.Info("task granted", "task_id", t.id, "function", t.displayName(), "grants", t.grantsNote)
	}
	h.mu.Unlock()
	run(later)
}

// policy is what t's options say about its retries, for its lifecycle.
func (t *task) policy() lifecycle.Policy {
	return lifecycle.Policy{Retriable: t.kind == abi.KindCall, ActorCall: t.kind == abi.KindActorCall,
		MaxRetries: t.maxRetries, Retry: t.retry, RetryOn: t.retryOn}
}

// awaitArgs waits for t's ObjectRef arguments and then queues t. Refs owned
// by other hosts are borrowed (asked of their owners); refs whose every
// copy is gone are rebuilt first.
func (h *Owner) awaitArgs(ctx context.Context, t *task) {
	var deps []ids.ObjectID
	seen := map[ids.ObjectID]bool{}
	for _, a := range t.args {
		if a.IsRef && !seen[a.Ref.ID] {
			seen[a.Ref.ID] = true
			deps = append(deps, a.Ref.ID)
			h.gops.borrowRef(ctx, a.Ref)
			if h.cluster != nil && h.lin.lostHere(a.Ref.ID) {
				if err := h.lin.reconstruct(a.Ref.ID); err != nil {
					// Gone for good: fail now, wherever the task would run.
					h.fail(t, h.disp.argLost(t, a.Ref.ID, err))
					return
				}
			}
		}
	}
	h.mu.Lock()
	later := h.stepLocked(t, lifecycle.Await{Deps: len(deps)})
	starts := h.disp.dispatchLocked()
	h.mu.Unlock()
	run(later)
	h.disp.start(starts)
	for i, id := range deps {
		err := h.objs.OnReady(ctx, id, func(v abi.Value) { h.depReady(t, i, id, v) })
		if err != nil {
			h.fail(t, h.taskError(t, abi.ErrorBadRequest, fmt.Sprintf("argument %s: %v", id, err)))
			return
		}
	}
}

// submitFailed registers t as already failed with te: its refs exist (a
// guest holds them) and hold the failure.
func (h *Owner) submitFailed(t *task, te *abi.TaskError) {
	h.refs.submitted(t)
	t.cancelCh = make(chan struct{})
	t.lc.Policy = t.policy()
	h.mu.Lock()
	later := h.stepLocked(t, lifecycle.Fail{Err: te})
	h.mu.Unlock()
	if t.gen != nil {
		t.gen.wake = make(chan struct{}, 1)
	}
	run(later)
}

func (h *Owner) depReady(t *task, dep int, id ids.ObjectID, v abi.Value) {
	var failed *abi.TaskError
	if v.Codec == abi.CodecError {
		h.objs.MarkFetched(id) // its failure is reported through t's
		cause, err := h.objs.Value(context.Background(), id)
		te := &abi.TaskError{Kind: abi.ErrorHost, Message: "unreadable failure"}
		if err == nil {
			te = abi.DecodeTaskError(cause.Data)
		}
		failed = &abi.TaskError{Kind: abi.ErrorDependency, TaskID: t.id.String(), Function: t.displayName(),
			Host: h.cfg.ID, Message: fmt.Sprintf("argument %d failed", argPosition(t, id)), Cause: te}
	}
	h.mu.Lock()
	// The first failed argument by position fails the task, once the ones
	// before it are ready (lifecycle.ArgReady).
	later := h.stepLocked(t, lifecycle.ArgReady{Dep: dep, Err: failed})
	ended := t.lc.State.Terminal()
	starts := h.disp.dispatchLocked()
	h.mu.Unlock()
	run(later)
	h.disp.start(starts)
	if a := t.actor; ended && a != nil && t.kind == abi.KindActorCall {
		// The calls queued behind it may run now.
		h.mu.Lock()
		starts = h.acts.dispatchActorLocked(a)
		h.mu.Unlock()
		h.disp.start(starts)
	}
}

// argPosition is the position (from 1) of the first argument of t that is
// the ref id.
func argPosition(t *task, id ids.ObjectID) int {
	for i, a := range t.args {
		if a.IsRef && a.Ref.ID == id {
			return i + 1
		}
	}
	return 0
}

func (h *Owner) enqueue(t *task) {
	h.mu.Lock()
	later := h.stepLocked(t, lifecycle.Await{})
	starts := h.disp.dispatchLocked()
	h.mu.Unlock()
	run(later)
	h.disp.start(starts)
}

// queueOnActor brings an actor call's arguments here (unless its actor
// runs on another host, which pulls them itself) and queues it on its
// actor: an actor here runs its calls in order, one at a time, so a call's
// arguments are fetched before it is next, not while the actor waits.
func (ac *actorTable) queueOnActor(t *task) {
	h := ac.o
	h.mu.Lock()
	fetch := !t.fetched && t.actor != nil && (t.actor.worker == nil || t.actor.worker.remote == nil)
	t.fetched = true
	h.mu.Unlock()
	if fetch {
		if away := h.disp.argsAway(t); len(away) > 0 {
			h.disp.goTracked(func() {
				if h.disp.fetchArgs(t, away) {
					h.acts.actorCallReady(t)
				}
			})
			return
		}
	}
	h.acts.actorCallReady(t)
}

// fail ends t (in any state before a terminal one) with te as the value of
// each of its returns.
func (h *Owner) fail(t *task, te *abi.TaskError) {
	h.mu.Lock()
	if t.lc.State.Terminal() {
		h.mu.Unlock()
		return
	}
	var actorStarts []assignment
	defer func() { h.disp.start(actorStarts) }()
	if a := t.actor; a != nil && t.kind == abi.KindActorCall {
		// The calls queued behind it may run now.
		defer func() {
			h.mu.Lock()
			actorStarts = h.acts.dispatchActorLocked(a)
			h.mu.Unlock()
		}()
	}
	later := h.stepLocked(t, lifecycle.Fail{Err: te})
	starts := h.disp.dispatchLocked()
	h.mu.Unlock()
	run(later)
	h.disp.start(starts)
}

// sealFailure gives each of t's objects the failure te. A generator keeps
// the items it delivered: the failure takes the next place in its stream,
// the stream ends after it, and its completion object holds it too.
func (h *Owner) sealFailure(t *task, te *abi.TaskError) {
	if f := t.foreign; f != nil {
		// Run here for another host: its owner seals the failure.
		h.mu.Lock()
		if f.current == t {
			f.current = nil
		}
		bound := f.worker != nil
		h.mu.Unlock()
		d := ipc.Done{Task: t.id, Trap: te.Message, Kind: te.Kind}
		_ = f.send(ipc.TypeDone, d.Encode(nil))
		if !bound {
			f.finish()
		}
		return
	}
	v := te.Encode()
	if t.gen != nil {
		h.mu.Lock()
		i := t.gen.count
		t.gen.count++
		h.mu.Unlock()
		h.objs.Expect(t.id.Return(i+1), t.id)
		h.seal(t, t.id.Return(i), v)
		h.endStream(t, i+1)
		h.seal(t, t.id.Completion(), v)
	} else {
		for _, id := range t.returns() {
			h.seal(t, id, v)
		}
	}
	if t.job != nil {
		if t.kind == abi.KindMain {
			t.job.finish(v, h)
		} else if te.Kind != abi.ErrorCancelled {
			t.job.failed(t, te)
		}
	}
}

func (h *Owner) seal(t *task, id ids.ObjectID, v abi.Value) {
	if t.kind == abi.KindDescribe {
		// Read once by the host: kept in memory, so a full store does not
		// stop modules from registering.
		if err := h.objs.SealTransient(id, v); err == nil {
			return
		}
	}
	if err := h.objs.Seal(context.Background(), id, v); err != nil {
		h.log.Error("sealing a result", "task_id", t.id, "object_id", id, "err", err)
		v = h.taskError(t, storeErrorKind(err), err.Error()).Encode()
		_ = h.objs.Seal(context.Background(), id, v)
	}
	h.refs.sealed(id, v)
	h.acts.sealedHandles(t, id, v)
}

// endStream seals the end-of-stream marker at item i of a generator.
func (h *Owner) endStream(t *task, i int) {
	h.seal(t, t.id.Return(i), (&abi.TaskError{Kind: abi.ErrorEndOfStream, TaskID: t.id.String(), Function: t.function, Message: "end of stream"}).Encode())
}

// finishWorker ends the attempt a worker ran, with either te (a failure) or
// vals (its results), and puts the worker back to use.
func (dp *dispatcher) finishWorker(w *workerProc, t *task, te *abi.TaskError, vals []abi.Value) {
	h := dp.o
	h.mu.Lock()
	created := t.kind == abi.KindActorCreate && te == nil && !t.lc.Cancelled
	if w.endTaskLocked(t) {
		if te == nil && t.kind == abi.KindCall && t.actor == nil && !t.ranAt.IsZero() {
			h.runTimes.observe(t, h.clock.Now().Sub(t.ranAt))
		}
		promoted := w.promoteLocked() // the task queued behind t runs now
		if w.actor == nil && !created && !promoted {
			w.memHeld = 0 // an actor's worker keeps its memory while it lives
			w.idleLocked()
		}
	}
	var actorStarts []assignment
	var doomed []*task
	if a := t.actor; a != nil {
		switch {
		case t.kind == abi.KindActorCall && a.endCallLocked(t):
			a.calls++
		case created && !w.dead:
			defer func() { h.mu.Lock(); s := h.acts.actorCreatedLocked(a, w); h.mu.Unlock(); h.disp.start(s) }()
		case t.kind == abi.KindActorCreate && (te != nil || t.lc.Cancelled):
			msg := "its creation was cancelled"
			if te != nil {
				msg = "its constructor failed: " + te.Message
			}
			doomed = h.acts.actorDeadLocked(a, msg)
		}
	}
	defer func() {
		h.acts.failActorCalls(t.actor, doomed)
		h.disp.start(actorStarts)
	}()
	var later []func()
	switch {
	case t.lc.State == stateScheduled && te != nil:
		// Queued behind another task, and its Exec could not be made.
		later = h.stepLocked(t, lifecycle.Fail{Err: te})
	case !t.lc.State.Terminal():
		// A timeout, a violation or a cancel decide the outcome before te;
		// a retry queues the task again (an actor call at the head of its
		// actor's queue, so it runs before the calls behind it).
		later = h.stepLocked(t, lifecycle.Done{Err: te}, vals...)
	}
	if a := t.actor; a != nil && t.kind == abi.KindActorCall {
		actorStarts = h.acts.dispatchActorLocked(a)
	}
	starts := h.disp.dispatchLocked()
	h.mu.Unlock()
	h.disp.start(starts)
	run(later)
}

// block releases the CPU of a task that waits in Get, Wait or Next.
func (dp *dispatcher) block(t *task) {
	h := dp.o
	h.mu.Lock()
	later := h.stepLocked(t, lifecycle.Block{})
	var starts []assignment
	if later != nil || !t.lc.Holding {
		starts = h.disp.dispatchLocked()
	}
	h.mu.Unlock()
	h.disp.start(starts)
}

// unblock takes the CPU back when the wait ends.
func (dp *dispatcher) unblock(t *task) {
	h := dp.o
	h.mu.Lock()
	h.stepLocked(t, lifecycle.Unblock{})
	h.mu.Unlock()
}

// cancel cancels the task that makes id and, if recursive, the tasks it
// submitted (theirs too).
func (h *Owner) cancel(id ids.ObjectID, force, recursive bool) error {
	h.mu.Lock()
	t := h.tasks[id.Task()]
	h.mu.Unlock()
	if t == nil {
		if h.objs.Known(context.Background(), id) {
			return nil // already done: nothing to cancel
		}
		return fmt.Errorf("%w: %s", ErrTaskNotFound, id.Task())
	}
	h.cancelTask(t, force, recursive)
	return nil
}

func (h *Owner) cancelTask(t *task, force, recursive bool) {
	h.mu.Lock()
	later := h.stepLocked(t, lifecycle.Cancel{Force: force, Recursive: recursive})
	starts := h.disp.dispatchLocked()
	h.mu.Unlock()
	run(later)
	h.disp.start(starts)
}

// sealResults seals the values of t's successful attempt (a generator's
// items are sealed as they come: its stream ends here, and its completion
// object holds null).
func (h *Owner) sealResults(t *task, vals []abi.Value) {
	switch {
	case t.foreign != nil:
		// Run here for another host: foreignDone sends the results.
	case t.gen != nil:
		h.mu.Lock()
		n := t.gen.count
		h.mu.Unlock()
		h.endStream(t, n)
		h.seal(t, t.id.Completion(), abi.Value{Codec: abi.CodecJSON, Data: []byte("null")})
	default:
		for i, id := range t.returns() {
			h.seal(t, id, vals[i])
		}
		if t.job != nil && t.kind == abi.KindMain {
			t.job.finish(abi.Value{}, h)
		}
	}
}
