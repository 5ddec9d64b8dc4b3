package client

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/internal/kinds"
)

// fromConnect maps a Connect error back to this package's sentinels (or to
// a *TaskError when the host attached one). It is the mirror of the
// host's one mapping at its edge.
func fromConnect(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var te *TaskError
	for _, d := range ce.Details() {
		if msg, derr := d.Value(); derr == nil {
			if p, ok := msg.(*rayhostv1.TaskError); ok {
				te = taskError(p)
			}
		}
	}
	var sentinel error
	switch ce.Code() {
	case connect.CodeNotFound:
		sentinel = ErrNotFound
	case connect.CodeInvalidArgument:
		sentinel = ErrInvalidArgument
	case connect.CodeDeadlineExceeded:
		sentinel = ErrGetTimeout
	case connect.CodeCanceled:
		sentinel = ErrTaskCancelled
		if brokenConnection(err) {
			// Not a cancel anyone asked for: the connection broke.
			sentinel = ErrUnavailable
		}
	case connect.CodeUnavailable:
		sentinel = ErrUnavailable
	case connect.CodeUnauthenticated:
		sentinel = ErrUnauthenticated
	case connect.CodeResourceExhausted:
		sentinel = ErrResourceExhausted
	case connect.CodePermissionDenied:
		sentinel = ErrPermission
	case connect.CodeAlreadyExists:
		sentinel = ErrExists
	default:
		sentinel = ErrHost
	}
	if te != nil {
		return &taskFailure{te: te, code: sentinel}
	}
	if kind := kinds.Named(ce.Meta().Get(kinds.Header)); kind != nil {
		// A kind the code does not say: a host shutting down (an
		// unavailable host that cancelled nothing), an object lost.
		return fmt.Errorf("%w: %w: %s", kind, sentinel, ce.Message())
	}
	return fmt.Errorf("%w: %s", sentinel, ce.Message())
}

// taskFailure is a failed task's error as a client sees it: the
// *TaskError, which also matches the sentinel of its Connect code
// (ErrInvalidArgument for a call whose arguments did not decode…).
type taskFailure struct {
	te   *TaskError
	code error
}

func (f *taskFailure) Error() string   { return f.te.Error() }
func (f *taskFailure) Unwrap() []error { return []error{f.te, f.code} }

func taskError(p *rayhostv1.TaskError) *TaskError {
	if p == nil {
		return nil
	}
	return &TaskError{Kind: p.GetKind(), TaskID: p.GetTaskId(), Function: p.GetFunction(), Host: p.GetHost(),
		Attempt: int(p.GetAttempt()), Message: p.GetMessage(), Code: p.GetCode(), Stack: p.GetStack(), Cause: taskError(p.GetCause())}
}

// brokenConnection reports whether err comes from the connection itself
// (reset, closed under the call) rather than from the call.
func brokenConnection(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}
