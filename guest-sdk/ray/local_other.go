//go:build !wasip1

package ray

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// LocalOwner is the owner address of every object made in local mode
// (ObjectRef.Owner).
const LocalOwner = "local"

// RunLocal runs driver in local mode: in this process, without rayhost,
// without Wasm and without a sandbox, like Ray's local_mode. It is meant for
// unit tests of remote functions and for examples; real runs use `rayhost
// run`. A nil driver runs the one registered with Main.
//
// Local mode serves the same requests a rayhost host serves a guest, and
// the SDK takes the same code paths as in a guest: arguments and results
// are encoded and decoded, every task runs through the SDK's invocation
// code on its own goroutine (once its ObjectRef arguments exist), errors
// come back as *TaskError, and Put, Get, GetAll, Wait, Cancel, Sleep,
// Cancelled, generators (with Backpressure), actors (their calls one at a
// time, in order), GetActor, Kill (with MaxRestarts) and RetryExceptions
// (within MaxRetries) behave as on a host. What local mode does not do:
// isolate tasks (they share the process's memory, filesystem and
// environment), enforce resources, scheduling, Timeout, MemoryLimit,
// MountDir or Env (they are accepted, not applied), rerun an actor's call cut
// short by Kill (MaxTaskRetries), or stop a task that ignores its
// cancellation (Cancel with force ends its objects at once; the goroutine
// runs on, and its result is dropped).
//
// A goroutine that a remote function starts itself may call Remote and Put;
// they then act for local mode's own task rather than for that function's
// task, so Cancel with recursive does not reach what they submit.
//
// RunLocal returns the driver's error once the driver has returned and every
// task it started has ended; tasks still running then are cancelled (their
// Get, Wait, Next and Sleep calls return ErrTaskCancelled), as are all tasks
// when ctx is done. Calls of RunLocal run one at a time (one made from a
// task of RunLocal is refused: it would wait for itself). Outside RunLocal,
// a native build has no host: the SDK's calls report ErrNotInGuest. RunLocal
// exists only in native builds (not in GOOS=wasip1): call it from tests
// (_test.go files).
func RunLocal(ctx context.Context, driver func(ctx context.Context) error) error {
	registryMu.Lock()
	if driver == nil {
		driver = mainFn
	}
	regErr := registerErr
	registryMu.Unlock()
	if regErr != nil {
		return regErr
	}
	if driver == nil {
		return fmt.Errorf("%w: RunLocal: no driver given and none registered with Main", ErrBadArgument)
	}

	if l := activeLocal(); l != nil {
		if t := currentTask(); t != nil && t != l.stray {
			return fmt.Errorf("%w: RunLocal called from a task of RunLocal", ErrBadArgument) // it would wait for itself
		}
	}
	localRunMu.Lock()
	defer localRunMu.Unlock()
	l := newLocalHost(ctx)
	setActiveLocal(l)
	defer func() {
		l.shutdown()
		setActiveLocal(nil)
	}()

	main := l.addTask(abi.SubmitRequest{Task: ids.NewTaskID(), Kind: abi.KindMain}, nil)
	var driverErr error
	status := l.exec(main, 0, func(inv *abi.Invocation) abi.Status {
		return run(inv, func(ctx context.Context) ([]abi.Value, error) {
			driverErr = driver(ctx)
			return nil, driverErr
		})
	})
	if driverErr != nil {
		return driverErr
	}
	l.mu.Lock()
	res := main.result
	l.mu.Unlock()
	if status != abi.StatusOK && res != nil && len(res.Values) == 1 && res.Values[0].Codec == abi.CodecError {
		return taskErrorFrom(l.rebuild(main, abi.DecodeTaskError(res.Values[0].Data))) // a panic
	}
	return nil
}

var (
	localRunMu sync.Mutex // one RunLocal at a time
	activeMu   sync.Mutex
	active     *localHost
)

func activeLocal() *localHost {
	activeMu.Lock()
	defer activeMu.Unlock()
	return active
}

func setActiveLocal(l *localHost) {
	activeMu.Lock()
	active = l
	activeMu.Unlock()
}

// hostCall serves a request of the SDK in process when RunLocal runs.
func hostCall(op abi.Op, req []byte) ([]byte, error) {
	l := activeLocal()
	if l == nil {
		return nil, ErrNotInGuest
	}
	rep, code := l.serve(op, bytes.Clone(req))
	if code < 0 {
		return nil, codeError(code)
	}
	if len(rep) == 0 {
		return nil, nil
	}
	return rep, nil
}

// localHost is the in-process host of local mode. Its state is guarded by
// mu; every change closes wake, which blocked requests wait on.
type localHost struct {
	ctx    context.Context
	cancel context.CancelFunc
	stray  *taskState // the task of goroutines that are not an invocation's
	wg     sync.WaitGroup

	mu      sync.Mutex
	wake    chan struct{}
	closed  bool
	objects map[ids.ObjectID]abi.Value
	tasks   map[ids.TaskID]*localTask
	actors  map[ids.TaskID]*localActor
	names   map[[2]string]*localActor
}

// localTask is a task of local mode: a call, a generator, an actor's
// creation or call, or the driver.
type localTask struct {
	req      abi.SubmitRequest
	e        *entry
	parent   *localTask
	children []*localTask

	cancelled bool
	cancelCh  chan struct{}
	running   bool
	attempt   uint32
	finished  bool
	result    *abi.Result // the last Result the running attempt sent

	// generators
	items, attemptItems, consumed int
	failure                       *abi.Value // the error that ended the stream
}

type localActor struct {
	create    *localTask
	calls     []*localTask // queued, in submission order
	running   *localTask
	alive     bool
	dead      bool
	restart   bool
	restarts  int32 // left; -1 without limit
	name      [2]string
	hasName   bool
	ctorInput []abi.Value
}

func newLocalHost(ctx context.Context) *localHost {
	ctx, cancel := context.WithCancel(ctx)
	return &localHost{
		ctx: ctx, cancel: cancel,
		stray:   &taskState{id: ids.NewTaskID(), owner: LocalOwner},
		wake:    make(chan struct{}),
		objects: map[ids.ObjectID]abi.Value{},
		tasks:   map[ids.TaskID]*localTask{},
		actors:  map[ids.TaskID]*localActor{},
		names:   map[[2]string]*localActor{},
	}
}

// shutdown cancels every task, waits for their goroutines, and drops the
// state of the actors that lived here.
func (l *localHost) shutdown() {
	l.mu.Lock()
	l.closed = true
	for _, t := range l.tasks {
		l.cancelLocked(t, false, false)
	}
	l.mu.Unlock()
	l.cancel()
	l.wg.Wait()
	actorsMu.Lock()
	for id := range l.actors {
		delete(actors, id)
	}
	actorsMu.Unlock()
}

// broadcast wakes every waiter; l.mu must be held.
func (l *localHost) broadcast() {
	close(l.wake)
	l.wake = make(chan struct{})
}

// await blocks until cond (called with l.mu held) is true. timeoutNs < 0
// waits without limit, 0 only looks.
func (l *localHost) await(cond func() bool, timeoutNs int64, cancel <-chan struct{}) abi.ErrCode {
	var timer <-chan time.Time
	if timeoutNs > 0 {
		t := time.NewTimer(time.Duration(timeoutNs))
		defer t.Stop()
		timer = t.C
	}
	for {
		select { // a cancelled task's requests fail, as on a host
		case <-cancel:
			return abi.ErrCodeCancelled
		default:
		}
		l.mu.Lock()
		ok, wake := cond(), l.wake
		l.mu.Unlock()
		switch {
		case ok:
			return 0
		case timeoutNs == 0:
			return abi.ErrCodeTimeout
		}
		select {
		case <-wake:
		case <-timer:
			return abi.ErrCodeTimeout
		case <-cancel:
			return abi.ErrCodeCancelled
		case <-l.ctx.Done():
			return abi.ErrCodeCancelled
		}
	}
}

// caller is the task making the current request, nil for a goroutine that
// is no invocation's.
func (l *localHost) caller() *localTask {
	t := currentTask()
	if t == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tasks[t.id]
}

func cancelOf(t *localTask) <-chan struct{} {
	if t == nil {
		return nil
	}
	return t.cancelCh
}

func (l *localHost) serve(op abi.Op, req []byte) ([]byte, abi.ErrCode) {
	c := l.caller()
	switch op {
	case abi.OpSubmit:
		return nil, l.submit(c, req)
	case abi.OpGet:
		return l.get(c, req)
	case abi.OpPut:
		var r abi.PutRequest
		if r.Decode(req) != nil || !r.ID.IsPut() {
			return nil, abi.ErrCodeBadRequest
		}
		owner := l.stray.id
		if c != nil {
			owner = c.req.Task
		}
		if r.ID.Task() != owner {
			return nil, 0 // as a host does: a put under another task's ID is dropped
		}
		l.mu.Lock()
		if _, dup := l.objects[r.ID]; !dup {
			l.objects[r.ID] = r.Value
			l.broadcast()
		}
		l.mu.Unlock()
		return nil, 0
	case abi.OpWait:
		return l.wait(c, req)
	case abi.OpResult:
		var r abi.Result
		if r.Decode(req) != nil || c == nil {
			return nil, abi.ErrCodeBadRequest
		}
		l.mu.Lock()
		if c.running {
			c.result = &r
		}
		l.mu.Unlock()
		return nil, 0
	case abi.OpCancelled:
		if len(req) != 0 {
			return nil, abi.ErrCodeBadRequest
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if c != nil && c.cancelled {
			return []byte{1}, 0
		}
		return []byte{0}, 0
	case abi.OpSleep:
		var r abi.SleepRequest
		if r.Decode(req) != nil {
			return nil, abi.ErrCodeBadRequest
		}
		t := time.NewTimer(time.Duration(r.Ns))
		defer t.Stop()
		select {
		case <-t.C:
			return nil, 0
		case <-cancelOf(c):
			return nil, abi.ErrCodeCancelled
		case <-l.ctx.Done():
			return nil, abi.ErrCodeCancelled
		}
	case abi.OpYield:
		return nil, l.yield(c, req)
	case abi.OpNext:
		return l.next(c, req)
	case abi.OpCancel:
		var r abi.CancelRequest
		if r.Decode(req) != nil {
			return nil, abi.ErrCodeBadRequest
		}
		l.mu.Lock()
		if t := l.tasks[r.Ref.ID.Task()]; t != nil {
			l.cancelLocked(t, r.Force, r.Recursive)
		}
		l.mu.Unlock()
		return nil, 0
	case abi.OpGetActor:
		var r abi.GetActorRequest
		if r.Decode(req) != nil {
			return nil, abi.ErrCodeBadRequest
		}
		l.mu.Lock()
		a := l.names[[2]string{r.Name, r.Namespace}]
		l.mu.Unlock()
		if a == nil {
			return nil, abi.ErrCodeNotFound
		}
		info := abi.ActorInfo{Actor: a.create.req.Task, Owner: LocalOwner, Class: a.create.req.Function}
		return info.Encode(nil), 0
	case abi.OpKill:
		var r abi.KillRequest
		if r.Decode(req) != nil {
			return nil, abi.ErrCodeBadRequest
		}
		l.mu.Lock()
		if a := l.actors[r.Actor]; a != nil {
			l.killLocked(a, r.NoRestart)
		}
		l.mu.Unlock()
		return nil, 0
	}
	return nil, abi.ErrCodeUnknownOp
}

func (l *localHost) addTask(req abi.SubmitRequest, parent *localTask) *localTask {
	t := &localTask{req: req, parent: parent, cancelCh: make(chan struct{})}
	l.mu.Lock()
	l.tasks[req.Task] = t
	l.mu.Unlock()
	return t
}

// check returns why the host would refuse req, or "".
func check(req *abi.SubmitRequest, e *entry) string {
	if e == nil {
		return fmt.Sprintf("unknown function %q", req.Function)
	}
	kind := req.Kind
	if kind == 0 {
		kind = abi.KindCall
	}
	switch {
	case kind == abi.KindActorCreate && e.actor != "class",
		kind == abi.KindActorCall && e.actor != "method",
		kind == abi.KindCall && e.actor != "":
		return fmt.Sprintf("%s cannot be submitted as kind %d", e.name, kind)
	case e.variadic == nil && len(req.Args) != len(e.argTypes):
		return fmt.Sprintf("%s takes %d arguments, got %d", e.name, len(e.argTypes), len(req.Args))
	case req.Generator != e.generator:
		return fmt.Sprintf("generator flag does not match %s", e.name)
	case !e.generator && max(req.NumReturns, 1) != uint32(e.numReturns):
		return fmt.Sprintf("%s has %d results, not %d", e.name, e.numReturns, req.NumReturns)
	case !validResources(req.Resources):
		return "resources must be finite and not negative"
	}
	return ""
}

func (l *localHost) submit(parent *localTask, b []byte) abi.ErrCode {
	var req abi.SubmitRequest
	if err := req.Decode(b); err != nil {
		return abi.ErrCodeBadRequest
	}
	e := lookup(req.Function)
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, dup := l.tasks[req.Task]; dup {
		return 0 // a retried attempt submits its children again
	}
	t := &localTask{req: req, e: e, parent: parent, cancelCh: make(chan struct{})}
	l.tasks[req.Task] = t
	if parent != nil {
		parent.children = append(parent.children, t)
	}
	if msg := check(&req, e); msg != "" {
		l.finishLocked(t, nil, &abi.TaskError{Kind: abi.ErrorBadRequest, Message: msg})
		return 0
	}
	if l.closed {
		l.finishLocked(t, nil, &abi.TaskError{Kind: abi.ErrorCancelled, Message: "local mode is shutting down"})
		return 0
	}
	switch req.Kind {
	case abi.KindActorCreate:
		key := [2]string{req.Name, req.Namespace}
		if req.Name != "" && l.names[key] != nil {
			l.finishLocked(t, nil, &abi.TaskError{Kind: abi.ErrorBadRequest, Message: fmt.Sprintf("actor name %q is taken", req.Name)})
			return 0
		}
		a := &localActor{create: t, restarts: req.MaxRestarts, name: key, hasName: req.Name != ""}
		if a.hasName {
			l.names[key] = a
		}
		l.actors[req.Task] = a
		l.wg.Add(1)
		go l.runActor(a)
	case abi.KindActorCall:
		a := l.actors[req.Actor]
		if a == nil || a.dead {
			l.finishLocked(t, nil, &abi.TaskError{Kind: abi.ErrorActorDied, Message: "the actor is dead or unknown"})
			return 0
		}
		a.calls = append(a.calls, t)
		l.broadcast()
	default:
		l.wg.Add(1)
		go l.runTask(t)
	}
	return 0
}

// resolve waits for t's arguments and returns their values, or the error t
// fails with.
func (l *localHost) resolve(t *localTask) ([]abi.Value, *abi.TaskError) {
	vals := make([]abi.Value, len(t.req.Args))
	for i, a := range t.req.Args {
		if !a.IsRef {
			vals[i] = a.Value
			continue
		}
		var v abi.Value
		var known bool
		code := l.await(func() bool {
			var ready bool
			v, ready, known = l.valueLocked(a.Ref.ID)
			return ready || !known
		}, -1, t.cancelCh)
		switch {
		case code != 0:
			return nil, &abi.TaskError{Kind: abi.ErrorCancelled, Message: "the task was cancelled before it ran"}
		case !known:
			return nil, &abi.TaskError{Kind: abi.ErrorBadRequest, Message: fmt.Sprintf("argument %d: unknown object %s", i+1, a.Ref.ID)}
		case v.Codec == abi.CodecError:
			return nil, &abi.TaskError{Kind: abi.ErrorDependency, Message: "an argument failed", Cause: abi.DecodeTaskError(v.Data)}
		}
		vals[i] = v
	}
	return vals, nil
}

// exec runs one attempt of t through fn (which calls the SDK's invoke or
// run) on the current goroutine and returns its status.
func (l *localHost) exec(t *localTask, attempt uint32, fn func(*abi.Invocation) abi.Status) abi.Status {
	inv := abi.Invocation{Kind: t.req.Kind, Task: t.req.Task, Attempt: attempt, Owner: LocalOwner, Function: t.req.Function}
	switch t.req.Kind {
	case 0:
		inv.Kind = abi.KindCall
	case abi.KindActorCreate:
		inv.Actor = t.req.Task
	case abi.KindActorCall:
		inv.Actor = t.req.Actor
	}
	l.mu.Lock()
	t.running, t.attempt, t.result, t.attemptItems = true, attempt, nil, 0
	l.mu.Unlock()
	// Known as the caller before the SDK's run marks the task current, so
	// that an invocation refused before it runs still finds its task.
	setCurrent(&taskState{id: t.req.Task, owner: LocalOwner, attempt: attempt})
	status := fn(&inv)
	setCurrent(nil)
	l.mu.Lock()
	t.running = false
	l.mu.Unlock()
	return status
}

// attempt runs t once with args and returns its values or its error.
func (l *localHost) attempt(t *localTask, attempt uint32, args []abi.Value) ([]abi.Value, *abi.TaskError) {
	status := l.exec(t, attempt, func(inv *abi.Invocation) abi.Status {
		inv.Args = args
		return invoke(inv.Encode(nil))
	})
	l.mu.Lock()
	res := t.result
	l.mu.Unlock()
	switch {
	case res == nil:
		return nil, &abi.TaskError{Kind: abi.ErrorHost, Message: "the guest returned without a result"}
	case status != abi.StatusOK:
		if len(res.Values) != 1 || res.Values[0].Codec != abi.CodecError {
			return nil, &abi.TaskError{Kind: abi.ErrorHost, Message: "the guest failed without an error value"}
		}
		te := abi.DecodeTaskError(res.Values[0].Data)
		return nil, &abi.TaskError{Kind: te.Kind, Message: te.Message, Code: te.Code, Stack: te.Stack}
	}
	want := int(max(t.req.NumReturns, 1))
	if t.req.Generator {
		want = 0
	}
	if len(res.Values) != want {
		return nil, &abi.TaskError{Kind: abi.ErrorHost, Message: fmt.Sprintf("the guest returned %d values, not %d", len(res.Values), want)}
	}
	return res.Values, nil
}

// retryable mirrors the host's rule: within MaxRetries, application errors
// and panics are retried only as RetryExceptions says.
func retryable(t *localTask, te *abi.TaskError, attempt uint32) bool {
	if t.req.MaxRetries >= 0 && int64(attempt) >= int64(t.req.MaxRetries) {
		return false
	}
	switch te.Kind {
	case abi.ErrorApplication, abi.ErrorPanic:
		switch t.req.Retry {
		case abi.RetryAll:
			return true
		case abi.RetryListed:
			return slices.Contains(t.req.RetryOn, string(te.Kind)) || (te.Code != "" && slices.Contains(t.req.RetryOn, te.Code))
		}
	}
	return false
}

// runTask runs a call or a generator: it waits for the arguments, then runs
// attempts until one succeeds or may not be retried.
func (l *localHost) runTask(t *localTask) {
	defer l.wg.Done()
	args, te := l.resolve(t)
	if te != nil {
		l.finish(t, nil, te)
		return
	}
	for attempt := uint32(0); ; attempt++ {
		vals, te := l.attempt(t, attempt, args)
		l.mu.Lock()
		again := te != nil && !t.cancelled && !t.finished && retryable(t, te, attempt)
		l.mu.Unlock()
		if !again {
			l.finish(t, vals, te)
			return
		}
	}
}

// runActor creates the actor, then runs its calls one at a time in the
// order they were submitted, until it dies or local mode ends.
func (l *localHost) runActor(a *localActor) {
	defer l.wg.Done()
	args, te := l.resolve(a.create)
	if te == nil {
		a.ctorInput = args
		te = l.construct(a, 0)
	}
	if te != nil {
		l.mu.Lock()
		l.dieLocked(a, "the actor's constructor failed")
		l.finishLocked(a.create, nil, te)
		l.mu.Unlock()
		return
	}
	for restarts := uint32(1); ; {
		var call *localTask
		restart := false
		code := l.await(func() bool {
			if a.dead {
				return true
			}
			if a.restart {
				a.restart, restart = false, true
				return true
			}
			for len(a.calls) > 0 && a.calls[0].finished { // cancelled while queued
				a.calls = a.calls[1:]
			}
			if len(a.calls) > 0 {
				call, a.calls = a.calls[0], a.calls[1:]
				a.running = call
				return true
			}
			return false
		}, -1, nil)
		l.mu.Lock()
		dead := a.dead
		l.mu.Unlock()
		if code != 0 || dead {
			return
		}
		if restart {
			if te := l.construct(a, restarts); te != nil {
				l.mu.Lock()
				l.dieLocked(a, "the actor's constructor failed on restart: "+te.Message)
				l.mu.Unlock()
				return
			}
			restarts++
			continue
		}
		args, te := l.resolve(call)
		var vals []abi.Value
		if te == nil {
			vals, te = l.attempt(call, 0, args)
		}
		l.finish(call, vals, te)
		l.mu.Lock()
		a.running = nil
		l.mu.Unlock()
	}
}

// construct runs the actor's constructor; the first run also ends the
// creation task, which Ready waits for.
func (l *localHost) construct(a *localActor, attempt uint32) *abi.TaskError {
	vals, te := l.attempt(a.create, attempt, a.ctorInput)
	if te != nil {
		return te
	}
	l.mu.Lock()
	a.alive = true
	l.finishLocked(a.create, vals, nil)
	l.mu.Unlock()
	return nil
}

// dieLocked ends actor a: its queued and running calls fail, its name is free.
func (l *localHost) dieLocked(a *localActor, msg string) {
	if a.dead {
		return
	}
	a.dead = true
	if a.hasName && l.names[a.name] == a {
		delete(l.names, a.name)
	}
	died := &abi.TaskError{Kind: abi.ErrorActorDied, Message: msg}
	for _, c := range a.calls {
		l.finishLocked(c, nil, died)
	}
	a.calls = nil
	if a.running != nil {
		l.finishLocked(a.running, nil, died)
		signalCancel(a.running)
	}
	l.broadcast()
}

func (l *localHost) killLocked(a *localActor, noRestart bool) {
	if a.dead {
		return
	}
	if !a.alive {
		l.cancelLocked(a.create, true, false)
		l.dieLocked(a, "the actor was killed")
		return
	}
	if noRestart || a.restarts == 0 {
		l.dieLocked(a, "the actor was killed")
		return
	}
	if a.restarts > 0 {
		a.restarts--
	}
	if r := a.running; r != nil && !r.finished {
		l.finishLocked(r, nil, &abi.TaskError{Kind: abi.ErrorActorDied, Message: "the actor was killed while running the call"})
		signalCancel(r)
	}
	a.restart = true
	l.broadcast()
}

// cancelLocked cancels t (and, if recursive, what it submitted). A task that
// is not running ends at once; a running one sees its blocking calls fail
// and ends as cancelled when it returns, or at once with force.
func (l *localHost) cancelLocked(t *localTask, force, recursive bool) {
	if recursive {
		for _, c := range t.children {
			l.cancelLocked(c, force, true)
		}
	}
	if t.finished || t.cancelled {
		return
	}
	signalCancel(t)
	if !t.running || force {
		l.finishLocked(t, nil, &abi.TaskError{Kind: abi.ErrorCancelled, Message: "the task was cancelled"})
	}
	l.broadcast()
}

// signalCancel makes t's blocking calls fail with ErrTaskCancelled; l.mu
// must be held.
func signalCancel(t *localTask) {
	if !t.cancelled {
		t.cancelled = true
		close(t.cancelCh)
	}
}

func (l *localHost) finish(t *localTask, vals []abi.Value, te *abi.TaskError) {
	l.mu.Lock()
	l.finishLocked(t, vals, te)
	l.mu.Unlock()
}

// rebuild fills in what the host knows about a failure, as a host does.
func (l *localHost) rebuild(t *localTask, te *abi.TaskError) *abi.TaskError {
	out := *te
	out.TaskID = t.req.Task.String()
	out.Function = t.req.Function
	if t.req.Kind == abi.KindMain {
		out.Function = "main"
	}
	out.Host = LocalOwner
	out.Attempt = t.attempt + 1 // counted from 1 where people read it, as the host does
	if out.Kind != abi.ErrorDependency {
		out.Cause = nil
	}
	return &out
}

// finishLocked seals t's objects with vals or with the failure te. A task
// cancelled while it ran ends as cancelled whatever it returned.
func (l *localHost) finishLocked(t *localTask, vals []abi.Value, te *abi.TaskError) {
	if t.finished {
		return
	}
	t.finished = true
	if t.cancelled && te == nil {
		te = &abi.TaskError{Kind: abi.ErrorCancelled, Message: "the task was cancelled"}
	}
	switch {
	case t.req.Generator:
		if te != nil {
			v := l.rebuild(t, te).Encode()
			t.failure = &v
		}
	case te != nil:
		v := l.rebuild(t, te).Encode()
		for i := range max(int(t.req.NumReturns), 1) {
			l.objects[t.req.Task.Return(i)] = v
		}
	default:
		for i, v := range vals {
			l.objects[t.req.Task.Return(i)] = v
		}
	}
	l.broadcast()
}

var endOfStream = (&abi.TaskError{Kind: abi.ErrorEndOfStream, Message: "end of stream"}).Encode()

// valueLocked returns the value of id if it is ready, and whether the
// object is known at all (an object of a task not finished yet is).
func (l *localHost) valueLocked(id ids.ObjectID) (v abi.Value, ready, known bool) {
	if v, ok := l.objects[id]; ok {
		return v, true, true
	}
	t := l.tasks[id.Task()]
	if t == nil || id.IsPut() {
		return abi.Value{}, false, false
	}
	i := id.ReturnIndex()
	if !t.req.Generator {
		return abi.Value{}, false, i < max(int(t.req.NumReturns), 1)
	}
	switch {
	case !t.finished || i < t.items:
		return abi.Value{}, false, true
	case i == t.items && t.failure != nil:
		return *t.failure, true, true
	}
	return endOfStream, true, true
}

func (l *localHost) get(c *localTask, b []byte) ([]byte, abi.ErrCode) {
	var req abi.GetRequest
	if req.Decode(b) != nil {
		return nil, abi.ErrCodeBadRequest
	}
	vals := make([]abi.Value, len(req.Refs))
	code := l.await(func() bool {
		all, failed := true, -1
		for i, r := range req.Refs {
			v, ready, known := l.valueLocked(r.ID)
			if !known {
				v, ready = (&abi.TaskError{Kind: abi.ErrorBadRequest, TaskID: r.ID.Task().String(), Message: "unknown object " + r.ID.String()}).Encode(), true
			}
			vals[i] = v
			all = all && ready
			if ready && v.Codec == abi.CodecError && failed < 0 {
				failed = i
			}
		}
		if !all && failed >= 0 { // fail fast: every slot not ready holds the failure
			for i, r := range req.Refs {
				if _, ready, _ := l.valueLocked(r.ID); !ready {
					vals[i] = vals[failed]
				}
			}
		}
		return all || failed >= 0
	}, req.TimeoutNs, cancelOf(c))
	if code != 0 {
		return nil, code
	}
	rep := abi.GetReply{Values: vals}
	return rep.Encode(nil), 0
}

func (l *localHost) wait(c *localTask, b []byte) ([]byte, abi.ErrCode) {
	var req abi.WaitRequest
	if req.Decode(b) != nil || req.NumReturns < 1 || int(req.NumReturns) > len(req.Refs) {
		return nil, abi.ErrCodeBadRequest
	}
	var ready []uint32
	unknown := false
	code := l.await(func() bool {
		ready = ready[:0]
		for i, r := range req.Refs {
			_, ok, known := l.valueLocked(r.ID)
			if !known {
				unknown = true
				return true
			}
			if ok && len(ready) < int(req.NumReturns) {
				ready = append(ready, uint32(i))
			}
		}
		return len(ready) == int(req.NumReturns)
	}, req.TimeoutNs, cancelOf(c))
	switch {
	case unknown:
		return nil, abi.ErrCodeBadRequest
	case code == abi.ErrCodeTimeout: // not an error for wait: whatever is ready
	case code != 0:
		return nil, code
	}
	rep := abi.WaitReply{Ready: ready}
	return rep.Encode(nil), 0
}

func (l *localHost) yield(c *localTask, b []byte) abi.ErrCode {
	v, err := abi.DecodeValue(b)
	if err != nil || c == nil || !c.req.Generator {
		return abi.ErrCodeBadRequest
	}
	l.mu.Lock()
	if c.finished || c.cancelled {
		l.mu.Unlock()
		return abi.ErrCodeCancelled
	}
	i := c.attemptItems
	c.attemptItems++
	if i == c.items { // an item an earlier attempt delivered is dropped
		l.objects[c.req.Task.Return(i)] = v
		c.items++
		l.broadcast()
	}
	bp := int(c.req.Backpressure)
	l.mu.Unlock()
	if bp == 0 {
		return 0
	}
	return l.await(func() bool { return c.items-c.consumed < bp }, -1, c.cancelCh)
}

func (l *localHost) next(c *localTask, b []byte) ([]byte, abi.ErrCode) {
	var req abi.NextRequest
	if req.Decode(b) != nil {
		return nil, abi.ErrCodeBadRequest
	}
	l.mu.Lock()
	g := l.tasks[req.Task]
	l.mu.Unlock()
	if g == nil || !g.req.Generator {
		return nil, abi.ErrCodeBadRequest
	}
	i := int(req.Index)
	var end bool
	code := l.await(func() bool {
		switch {
		case i < g.items:
			g.consumed = max(g.consumed, i+1)
			l.broadcast()
			return true
		case g.finished:
			end = !(i == g.items && g.failure != nil)
			return true
		}
		return false
	}, req.TimeoutNs, cancelOf(c))
	if code != 0 {
		return nil, code
	}
	rep := abi.NextReply{End: end}
	return rep.Encode(nil), 0
}
