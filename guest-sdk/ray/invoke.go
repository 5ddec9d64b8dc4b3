package ray

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/rayhost/rayhost/internal/abi"
)

// invoke runs one invocation (the bytes the host put in the mailbox) and
// sends its Result. It never panics: a panic in the function becomes an
// error result with the panic's message and stack.
func invoke(input []byte) abi.Status {
	var inv abi.Invocation
	if err := inv.Decode(input); err != nil {
		return sendError(nil, abi.StatusBadRequest, &abi.TaskError{Kind: abi.ErrorBadRequest, Message: err.Error()})
	}
	switch inv.Kind {
	case abi.KindDescribe:
		b, err := json.Marshal(describe())
		if err != nil {
			return sendError(nil, abi.StatusBadRequest, &abi.TaskError{Kind: abi.ErrorBadRequest, Message: "describing the module: " + err.Error()})
		}
		return sendResult(nil, []abi.Value{{Codec: abi.CodecJSON, Data: b}})
	case abi.KindMain:
		registryMu.Lock()
		fn := mainFn
		registryMu.Unlock()
		if fn == nil {
			return sendError(nil, abi.StatusBadRequest, &abi.TaskError{Kind: abi.ErrorBadRequest, Message: "the module has no ray.Main"})
		}
		return run(&inv, func(ctx context.Context) ([]abi.Value, error) {
			return nil, fn(ctx)
		})
	}
	fn, te := callOf(&inv)
	if te != nil {
		return sendError(nil, abi.StatusBadRequest, te)
	}
	if inv.Kind == abi.KindActorCall {
		// An actor's instance may serve several calls at once
		// (concurrent_wasip1.go); otherwise the call runs as any other.
		if status, ok := serveCalls(&inv, fn); ok {
			return status
		}
	}
	return run(&inv, fn)
}

// callOf returns what runs a call's function, or why it cannot run.
func callOf(inv *abi.Invocation) (func(context.Context) ([]abi.Value, error), *abi.TaskError) {
	e := lookup(inv.Function)
	if e == nil {
		return nil, &abi.TaskError{Kind: abi.ErrorBadRequest, Message: fmt.Sprintf("unknown function %q", inv.Function)}
	}
	if e.variadic == nil && len(inv.Args) != len(e.argTypes) {
		return nil, &abi.TaskError{Kind: abi.ErrorBadRequest,
			Message: fmt.Sprintf("%s takes %d arguments, got %d", e.name, len(e.argTypes), len(inv.Args))}
	}
	args := inv.Args
	return func(ctx context.Context) ([]abi.Value, error) { return e.call(ctx, args) }, nil
}

// newTaskState is what the SDK knows of an invocation while it runs.
func newTaskState(inv *abi.Invocation) *taskState {
	return &taskState{id: inv.Task, owner: inv.Owner, attempt: inv.Attempt, fn: inv.Function, actor: inv.Actor}
}

func run(inv *abi.Invocation, fn func(context.Context) ([]abi.Value, error)) abi.Status {
	t := newTaskState(inv)
	setCurrent(t)
	defer setCurrent(nil)
	base, stop := baseContext(inv.Task)
	defer stop()
	return runAs(base, t, fn)
}

// runAs runs fn as task t, in a context derived from base, and sends its
// Result.
func runAs(base context.Context, t *taskState, fn func(context.Context) ([]abi.Value, error)) (status abi.Status) {
	ctx := context.WithValue(base, taskKey{}, t)

	defer func() {
		if r := recover(); r != nil {
			status = sendError(t, abi.StatusError, &abi.TaskError{
				Kind: abi.ErrorPanic, Message: fmt.Sprint(r), Stack: string(debug.Stack()),
			})
		}
	}()
	vals, err := fn(ctx)
	if err != nil {
		var ae argError
		if errors.As(err, &ae) {
			return sendError(t, abi.StatusBadRequest, &abi.TaskError{Kind: abi.ErrorBadRequest, Message: err.Error()})
		}
		kind := abi.ErrorApplication
		if errors.Is(err, ErrTaskCancelled) {
			kind = abi.ErrorCancelled
		}
		te := &abi.TaskError{Kind: kind, Message: err.Error()}
		var coded interface{ ErrorCode() string }
		if errors.As(err, &coded) {
			te.Code = coded.ErrorCode()
		}
		// A failure the function got from another task (and returned) stays
		// visible to errors.Is on the caller's side.
		var inner *TaskError
		if errors.As(err, &inner) {
			te.Cause = taskErrorABI(inner)
		}
		return sendError(t, abi.StatusError, te)
	}
	return sendResult(t, vals)
}

// resultEnder ends a call of a concurrent actor's instance with op done
// (concurrent_wasip1.go); ok false: send op result as for any call.
type resultEnder interface {
	end(status abi.Status, res []byte) (ok bool, err error)
}

// sendResultOf sends the Result of task t (nil: the invocation's).
func sendResultOf(t *taskState, status abi.Status, res []byte) error {
	if t != nil && t.call != nil {
		if ok, err := t.call.end(status, res); ok {
			return err
		}
	}
	_, err := hostCall(abi.OpResult, res)
	return err
}

func sendResult(t *taskState, vals []abi.Value) abi.Status {
	res := abi.Result{Values: vals}
	buf := res.Encode(nil)
	if err := sendResultOf(t, abi.StatusOK, buf); err != nil {
		kind := abi.ErrorHost
		if errors.Is(err, ErrTooLarge) {
			kind = abi.ErrorLimit
		}
		return sendError(t, abi.StatusError, &abi.TaskError{Kind: kind, Message: fmt.Sprintf("sending the result (%d bytes): %v", len(buf), err)})
	}
	return abi.StatusOK
}

func sendError(t *taskState, status abi.Status, te *abi.TaskError) abi.Status {
	res := abi.Result{Values: []abi.Value{te.Encode()}}
	_ = sendResultOf(t, status, res.Encode(nil)) // nothing more to do if the host refuses an error
	return status
}
