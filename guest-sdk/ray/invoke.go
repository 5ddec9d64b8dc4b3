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
		return sendError(abi.StatusBadRequest, &abi.TaskError{Kind: abi.ErrorBadRequest, Message: err.Error()})
	}
	switch inv.Kind {
	case abi.KindDescribe:
		b, err := json.Marshal(describe())
		if err != nil {
			return sendError(abi.StatusBadRequest, &abi.TaskError{Kind: abi.ErrorBadRequest, Message: "describing the module: " + err.Error()})
		}
		return sendResult([]abi.Value{{Codec: abi.CodecJSON, Data: b}})
	case abi.KindMain:
		registryMu.Lock()
		fn := mainFn
		registryMu.Unlock()
		if fn == nil {
			return sendError(abi.StatusBadRequest, &abi.TaskError{Kind: abi.ErrorBadRequest, Message: "the module has no ray.Main"})
		}
		return run(&inv, func(ctx context.Context) ([]abi.Value, error) {
			return nil, fn(ctx)
		})
	}
	e := lookup(inv.Function)
	if e == nil {
		return sendError(abi.StatusBadRequest, &abi.TaskError{Kind: abi.ErrorBadRequest, Message: fmt.Sprintf("unknown function %q", inv.Function)})
	}
	if e.variadic == nil && len(inv.Args) != len(e.argTypes) {
		return sendError(abi.StatusBadRequest, &abi.TaskError{Kind: abi.ErrorBadRequest,
			Message: fmt.Sprintf("%s takes %d arguments, got %d", e.name, len(e.argTypes), len(inv.Args))})
	}
	return run(&inv, func(ctx context.Context) ([]abi.Value, error) {
		return e.call(ctx, inv.Args)
	})
}

func run(inv *abi.Invocation, fn func(context.Context) ([]abi.Value, error)) (status abi.Status) {
	t := &taskState{id: inv.Task, owner: inv.Owner, attempt: inv.Attempt, fn: inv.Function, actor: inv.Actor}
	setCurrent(t)
	defer setCurrent(nil)
	ctx := context.WithValue(context.Background(), taskKey{}, t)

	defer func() {
		if r := recover(); r != nil {
			status = sendError(abi.StatusError, &abi.TaskError{
				Kind: abi.ErrorPanic, Message: fmt.Sprint(r), Stack: string(debug.Stack()),
			})
		}
	}()
	vals, err := fn(ctx)
	if err != nil {
		var ae argError
		if errors.As(err, &ae) {
			return sendError(abi.StatusBadRequest, &abi.TaskError{Kind: abi.ErrorBadRequest, Message: err.Error()})
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
		return sendError(abi.StatusError, te)
	}
	return sendResult(vals)
}

func sendResult(vals []abi.Value) abi.Status {
	res := abi.Result{Values: vals}
	buf := res.Encode(nil)
	if _, err := hostCall(abi.OpResult, buf); err != nil {
		kind := abi.ErrorHost
		if errors.Is(err, ErrTooLarge) {
			kind = abi.ErrorLimit
		}
		return sendError(abi.StatusError, &abi.TaskError{Kind: kind, Message: fmt.Sprintf("sending the result (%d bytes): %v", len(buf), err)})
	}
	return abi.StatusOK
}

func sendError(status abi.Status, te *abi.TaskError) abi.Status {
	res := abi.Result{Values: []abi.Value{te.Encode()}}
	_, _ = hostCall(abi.OpResult, res.Encode(nil)) // nothing more to do if the host refuses an error
	return status
}
