//go:build !wasip1

package ray

import (
	"bytes"
	"context"
	"fmt"
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
	case abi.OpRelease:
		// Local mode counts nothing (release_other.go).
		return nil, 0
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
