package edge

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/kinds"
	"github.com/rayhost/rayhost/store"
)

func TestCodeOf(t *testing.T) {
	notFound := kinds.Classed(kinds.ErrNotFound, "host: module not found")
	for _, c := range []struct {
		err  error
		want connect.Code
	}{
		{notFound, connect.CodeNotFound},
		{fmt.Errorf("argument 1: %w: x", notFound), connect.CodeNotFound},
		{kinds.Classed(kinds.ErrInvalidArgument, "host: invalid module"), connect.CodeInvalidArgument},
		{fmt.Errorf("argument 2: %w", ids.ErrInvalidID), connect.CodeInvalidArgument},
		{kinds.Classed(kinds.ErrGetTimeout, "host: get timed out"), connect.CodeDeadlineExceeded},
		{context.DeadlineExceeded, connect.CodeDeadlineExceeded},
		{fmt.Errorf("waiting: %w", context.Canceled), connect.CodeCanceled},
		{kinds.Classed(kinds.ErrUnavailable, "host: closed"), connect.CodeUnavailable},
		{fmt.Errorf("%w: forged ID", kinds.Classed(kinds.ErrPermission, "host: permission denied")), connect.CodePermissionDenied},
		{kinds.Classed(kinds.ErrExists, "host: module name taken"), connect.CodeAlreadyExists},
		{kinds.Classed(kinds.ErrUnauthenticated, "guard: no credential"), connect.CodeUnauthenticated},
		{fmt.Errorf("put: %w", store.ErrStoreFull), connect.CodeResourceExhausted},
		{kinds.Classed(kinds.ErrResourceExhausted, "limit exceeded"), connect.CodeResourceExhausted},
		// Lost and owner-died objects are task failures, not API classes:
		// a call that fails with one is an internal error.
		{kinds.Classed(kinds.ErrObjectLost, "host: object lost"), connect.CodeInternal},
		{errors.New("something else"), connect.CodeInternal},
		// The first class in CodeOf's order wins.
		{errors.Join(kinds.ErrResourceExhausted, kinds.ErrNotFound), connect.CodeNotFound},
	} {
		if got := CodeOf(c.err); got != c.want {
			t.Errorf("CodeOf(%v) = %v, want %v", c.err, got, c.want)
		}
		ce := new(connect.Error)
		if err := ToConnect(c.err); !errors.As(err, &ce) || ce.Code() != c.want || ce.Message() != c.err.Error() {
			t.Errorf("ToConnect(%v) = %v, want code %v with the error's message", c.err, err, c.want)
		}
	}
}

// A call the host's shutdown ends is unavailable, says so in kinds.Header,
// and is no cancel, though its context was cancelled.
func TestShutdownIsNoCancel(t *testing.T) {
	closed := kinds.Classed(kinds.ErrHostShuttingDown, "host: shutting down")
	ctx, stop := context.WithCancelCause(context.Background())
	stop(closed)
	for name, err := range map[string]error{
		"the cause":          ToConnect(closed),
		"a cancelled wait":   failed(ctx, fmt.Errorf("reading: %w", context.Canceled)),
		"the cause, wrapped": failed(ctx, fmt.Errorf("waiting: %w", closed)),
	} {
		ce := new(connect.Error)
		if !errors.As(err, &ce) || ce.Code() != connect.CodeUnavailable || ce.Meta().Get(kinds.Header) != "host_shutting_down" {
			t.Errorf("%s: %v (meta %v), want unavailable, host_shutting_down", name, err, ce.Meta())
		}
	}
	// A cancel by the caller stays one.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := failed(ctx, context.Canceled); connect.CodeOf(err) != connect.CodeCanceled {
		t.Errorf("a caller's cancel: %v", err)
	}
}

func TestClassedKeepsItsMessage(t *testing.T) {
	err := kinds.Classed(kinds.ErrNotFound, "host: task not found")
	if err.Error() != "host: task not found" {
		t.Errorf("message %q", err)
	}
	if !errors.Is(err, kinds.ErrNotFound) || errors.Is(err, kinds.ErrInvalidArgument) {
		t.Error("a classed error must match its class and no other")
	}
	if errors.Is(err, kinds.Classed(kinds.ErrNotFound, "host: task not found")) {
		t.Error("two classed sentinels with one message must differ")
	}
}

func TestToConnectPassesConnectErrorsOn(t *testing.T) {
	// A peer's answer, passed on, keeps its code.
	peer := connect.NewError(connect.CodeDataLoss, errors.New("from a peer"))
	var ce *connect.Error
	if got := ToConnect(fmt.Errorf("wrapped: %w", peer)); !errors.As(got, &ce) || ce.Code() != connect.CodeDataLoss {
		t.Errorf("a peer's Connect error lost its code: %v", got)
	}
}

func TestTaskCode(t *testing.T) {
	for _, c := range []struct {
		te   *abi.TaskError
		want connect.Code
	}{
		{&abi.TaskError{Kind: abi.ErrorBadRequest}, connect.CodeInvalidArgument},
		{&abi.TaskError{Kind: abi.ErrorCancelled}, connect.CodeCanceled},
		{&abi.TaskError{Kind: abi.ErrorInfeasible}, connect.CodeFailedPrecondition},
		{&abi.TaskError{Kind: abi.ErrorTimeout}, connect.CodeAborted},
		{&abi.TaskError{Kind: abi.ErrorOutOfMemory}, connect.CodeResourceExhausted},
		{&abi.TaskError{Kind: abi.ErrorLimit}, connect.CodeResourceExhausted},
		{&abi.TaskError{Kind: abi.ErrorWorkerDied}, connect.CodeAborted},
		{&abi.TaskError{Kind: abi.ErrorObjectLost}, connect.CodeDataLoss},
		{&abi.TaskError{Kind: abi.ErrorOwnerDied}, connect.CodeUnavailable},
		{&abi.TaskError{Kind: abi.ErrorHost}, connect.CodeInternal},
		{&abi.TaskError{Kind: abi.ErrorPermissionDenied}, connect.CodePermissionDenied},
		{&abi.TaskError{Kind: abi.ErrorApplication}, connect.CodeUnknown},
		{&abi.TaskError{Kind: abi.ErrorDependency}, connect.CodeUnknown},
		{&abi.TaskError{Kind: abi.ErrorDependency, Cause: &abi.TaskError{Kind: abi.ErrorDependency,
			Cause: &abi.TaskError{Kind: abi.ErrorCancelled}}}, connect.CodeCanceled},
	} {
		if got := TaskCode(c.te); got != c.want {
			t.Errorf("TaskCode(%s) = %v, want %v", c.te.Kind, got, c.want)
		}
	}
}

func TestTaskFailureCarriesTheTaskError(t *testing.T) {
	te := &abi.TaskError{Kind: abi.ErrorDependency, TaskID: "t1", Function: "f", Host: "h1", Attempt: 2, Message: "argument 1",
		Cause: &abi.TaskError{Kind: abi.ErrorPanic, Function: "g", Message: "boom", Stack: "goroutine 7", Code: "E1"}}
	var ce *connect.Error
	if !errors.As(TaskFailure(te.Encode().Data), &ce) {
		t.Fatal("not a Connect error")
	}
	if ce.Code() != connect.CodeUnknown || ce.Message() != FormatTaskError(te) {
		t.Errorf("code %v, message %q", ce.Code(), ce.Message())
	}
	var got *rayhostv1.TaskError
	for _, d := range ce.Details() {
		if m, err := d.Value(); err == nil {
			got, _ = m.(*rayhostv1.TaskError)
		}
	}
	if got == nil || got.GetKind() != "dependency" || got.GetAttempt() != 2 || got.GetCause().GetStack() != "goroutine 7" ||
		got.GetCause().GetCode() != "E1" || got.GetCause().GetFunction() != "g" {
		t.Errorf("detail %v", got)
	}
}

func TestTaskFailureOfGarbage(t *testing.T) {
	// An object of codec error whose bytes do not decode still fails the
	// call cleanly.
	var ce *connect.Error
	if !errors.As(TaskFailure([]byte("\xff\x00not json")), &ce) {
		t.Fatal("not a Connect error")
	}
	if ce.Code() != connect.CodeInternal {
		t.Errorf("garbage task error: %v", ce)
	}
}
