package edge

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/kinds"
	"github.com/rayhost/rayhost/store"
)

// CodeOf maps an error to its Connect code: by the API class of
// internal/kinds it belongs to, and for errors of other packages (context,
// ids, store) by their own sentinels. The order decides for an error that
// matches more than one.
func CodeOf(err error) connect.Code {
	switch {
	case errors.Is(err, kinds.ErrNotFound):
		return connect.CodeNotFound
	case errors.Is(err, kinds.ErrInvalidArgument), errors.Is(err, ids.ErrInvalidID):
		return connect.CodeInvalidArgument
	case errors.Is(err, kinds.ErrGetTimeout), errors.Is(err, context.DeadlineExceeded):
		return connect.CodeDeadlineExceeded
	case errors.Is(err, kinds.ErrHostShuttingDown):
		// Before a cancel: a call ended by the host's shutdown was
		// cancelled by no one.
		return connect.CodeUnavailable
	case errors.Is(err, context.Canceled):
		return connect.CodeCanceled
	case errors.Is(err, kinds.ErrUnavailable):
		return connect.CodeUnavailable
	case errors.Is(err, kinds.ErrPermission):
		return connect.CodePermissionDenied
	case errors.Is(err, kinds.ErrExists):
		return connect.CodeAlreadyExists
	case errors.Is(err, kinds.ErrUnauthenticated):
		return connect.CodeUnauthenticated
	case errors.Is(err, store.ErrStoreFull), errors.Is(err, kinds.ErrResourceExhausted):
		return connect.CodeResourceExhausted
	}
	return connect.CodeInternal
}

// ToConnect returns err as a Connect error with its code (CodeOf), and
// the kind its code does not say (a host shutting down, an object lost or
// whose owner died) in the kinds.Header metadata; a Connect error (a
// peer's answer, passed on) is returned as it is.
func ToConnect(err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	ce = connect.NewError(CodeOf(err), err)
	if k := kinds.Name(err); k != "" {
		ce.Meta().Set(kinds.Header, k)
	}
	return ce
}

// failed is ToConnect for the error of a call that waits (Get, Wait):
// when its ctx ended, the cause it was cancelled with (the host shutting
// down: kinds.ErrHostShuttingDown) in place of a bare context.Canceled,
// which reads as a cancel nobody asked for.
func failed(ctx context.Context, err error) error {
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			err = fmt.Errorf("%w (%w)", cause, err)
		}
	}
	return ToConnect(err)
}

// Invalid returns an invalid-argument Connect error with the formatted
// message.
func Invalid(format string, args ...any) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(format, args...))
}

// TaskCode is the Connect code of a Get whose object is a task failure.
func TaskCode(te *abi.TaskError) connect.Code {
	switch te.Kind {
	case abi.ErrorBadRequest:
		return connect.CodeInvalidArgument
	case abi.ErrorCancelled:
		return connect.CodeCanceled
	case abi.ErrorInfeasible:
		return connect.CodeFailedPrecondition
	case abi.ErrorTimeout:
		return connect.CodeAborted
	case abi.ErrorOutOfMemory, abi.ErrorLimit:
		return connect.CodeResourceExhausted
	case abi.ErrorWorkerDied:
		return connect.CodeAborted
	case abi.ErrorObjectLost:
		return connect.CodeDataLoss
	case abi.ErrorOwnerDied:
		return connect.CodeUnavailable
	case abi.ErrorObjectFreed:
		return connect.CodeNotFound
	case abi.ErrorHost:
		return connect.CodeInternal
	case abi.ErrorPermissionDenied:
		return connect.CodePermissionDenied
	case abi.ErrorDependency:
		if te.Cause != nil {
			return TaskCode(te.Cause)
		}
	}
	return connect.CodeUnknown
}

// FormatTaskError is a failed task's error as people read it (a driver's
// result, a client's error message), with its causes and stack.
func FormatTaskError(te *abi.TaskError) string {
	var b strings.Builder
	if te.Function != "" {
		fmt.Fprintf(&b, "task %s", te.Function)
	} else {
		fmt.Fprintf(&b, "task %s", te.TaskID)
	}
	if te.Host != "" {
		fmt.Fprintf(&b, " on %s", te.Host)
	}
	fmt.Fprintf(&b, " (attempt %d) failed: %s: %s", te.Attempt, te.Kind, te.Message)
	if te.Cause != nil {
		b.WriteString("\ncaused by: " + FormatTaskError(te.Cause))
	}
	if te.Stack != "" {
		b.WriteString("\n" + te.Stack)
	}
	return b.String()
}

func taskErrorProto(te *abi.TaskError) *rayhostv1.TaskError {
	if te == nil {
		return nil
	}
	return &rayhostv1.TaskError{Kind: string(te.Kind), TaskId: te.TaskID, Function: te.Function, Host: te.Host,
		Attempt: te.Attempt, Message: te.Message, Code: te.Code, Stack: te.Stack, Cause: taskErrorProto(te.Cause)}
}

// TaskFailure is the Connect error of a failed task's object (data is its
// encoded TaskError), with the TaskError attached as a detail for clients.
func TaskFailure(data []byte) error {
	te := abi.DecodeTaskError(data)
	ce := connect.NewError(TaskCode(te), errors.New(FormatTaskError(te)))
	if d, err := connect.NewErrorDetail(taskErrorProto(te)); err == nil {
		ce.AddDetail(d)
	}
	return ce
}
