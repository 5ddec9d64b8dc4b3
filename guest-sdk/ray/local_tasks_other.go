//go:build !wasip1

// This file holds local mode's tasks: submitting one, resolving its
// arguments, running its attempts with retries, cancelling it, and sealing
// its objects when it ends.

package ray

import (
	"fmt"
	"slices"

	"github.com/rayhost/rayhost/internal/abi"
)

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
		return errResources
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
		a := &localActor{create: t, restarts: req.MaxRestarts, name: key, hasName: req.Name != "",
			running: map[*localTask]bool{}, max: max(1, int(req.MaxConcurrency))}
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
			return nil, &abi.TaskError{Kind: abi.ErrorDependency, Message: fmt.Sprintf("argument %d failed", i+1), Cause: abi.DecodeTaskError(v.Data)}
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
