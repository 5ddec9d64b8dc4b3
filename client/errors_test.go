package client

import (
	"errors"
	"fmt"
	"net"
	"testing"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/guest-sdk/ray"
	"github.com/rayhost/rayhost/internal/kinds"
)

// The task sentinels are the guest SDK's values, so errors.Is works with
// either package's.
func TestSentinelsAreTheGuestSDKs(t *testing.T) {
	for _, c := range []struct{ client, guest error }{
		{ErrGetTimeout, ray.ErrGetTimeout}, {ErrTaskFailed, ray.ErrTaskFailed}, {ErrTaskCancelled, ray.ErrTaskCancelled},
		{ErrWorkerDied, ray.ErrWorkerDied}, {ErrTaskTimeout, ray.ErrTaskTimeout}, {ErrObjectLost, ray.ErrObjectLost},
		{ErrOwnerDied, ray.ErrOwnerDied}, {ErrHostShuttingDown, ray.ErrHostShuttingDown},
	} {
		if c.client != c.guest {
			t.Errorf("client's %v is not ray's", c.client)
		}
	}
	if ErrTooLarge != ErrResourceExhausted {
		t.Error("ErrTooLarge is ErrResourceExhausted")
	}
}

func TestFromConnectCodes(t *testing.T) {
	for code, want := range map[connect.Code]error{
		connect.CodeNotFound: ErrNotFound, connect.CodeInvalidArgument: ErrInvalidArgument,
		connect.CodeDeadlineExceeded: ErrGetTimeout, connect.CodeCanceled: ErrTaskCancelled,
		connect.CodeUnavailable: ErrUnavailable, connect.CodeUnauthenticated: ErrUnauthenticated,
		connect.CodeResourceExhausted: ErrResourceExhausted, connect.CodePermissionDenied: ErrPermission,
		connect.CodeAlreadyExists: ErrExists, connect.CodeInternal: ErrHost, connect.CodeDataLoss: ErrHost,
	} {
		err := fromConnect(connect.NewError(code, errors.New("host: the reason")))
		if !errors.Is(err, want) {
			t.Errorf("%v: %v is not %v", code, err, want)
		}
		if err.Error() != want.Error()+": host: the reason" {
			t.Errorf("%v: message %q", code, err)
		}
	}
	if fromConnect(nil) != nil {
		t.Error("fromConnect(nil) != nil")
	}
	if err := fromConnect(errors.New("dial: refused")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("a non-Connect error: %v", err)
	}
	// A cancel nobody asked for: the connection broke.
	broken := connect.NewError(connect.CodeCanceled, fmt.Errorf("read: %w", &net.OpError{Op: "read", Err: errors.New("reset")}))
	if err := fromConnect(broken); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrTaskCancelled) {
		t.Errorf("a broken connection: %v", err)
	}
}

// A kind the code does not say travels in kinds.Header: a host shutting
// down is unavailable, and no cancel.
func TestFromConnectKindHeader(t *testing.T) {
	ce := connect.NewError(connect.CodeUnavailable, errors.New("host: shutting down"))
	ce.Meta().Set(kinds.Header, "host_shutting_down")
	err := fromConnect(ce)
	if !errors.Is(err, ErrHostShuttingDown) || !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrTaskCancelled) {
		t.Errorf("a host shutting down: %v", err)
	}
	ce = connect.NewError(connect.CodeInternal, errors.New("host: owner died"))
	ce.Meta().Set(kinds.Header, "owner_died")
	if err := fromConnect(ce); !errors.Is(err, ErrOwnerDied) || !errors.Is(err, ErrHost) {
		t.Errorf("an owner that died: %v", err)
	}
	ce = connect.NewError(connect.CodeUnavailable, errors.New("host: unreachable"))
	ce.Meta().Set(kinds.Header, "no such kind")
	if err := fromConnect(ce); errors.Is(err, ErrHostShuttingDown) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("an unknown kind: %v", err)
	}
}

// A failed task's error is a *TaskError, the guest SDK's type, matching
// the task sentinels of its kind and its code's sentinel.
func TestFromConnectTaskError(t *testing.T) {
	ce := connect.NewError(connect.CodeCanceled, errors.New("task f failed"))
	d, err := connect.NewErrorDetail(&rayhostv1.TaskError{Kind: "dependency", TaskId: "t1", Function: "f", Host: "h1", Attempt: 1,
		Message: "argument 1", Cause: &rayhostv1.TaskError{Kind: "cancelled", Function: "g", Message: "stop", Code: "E1"}})
	if err != nil {
		t.Fatal(err)
	}
	ce.AddDetail(d)
	got := fromConnect(ce)
	var te *ray.TaskError
	if !errors.As(got, &te) {
		t.Fatalf("%v is no *ray.TaskError", got)
	}
	var cte *TaskError
	if !errors.As(got, &cte) || cte != te {
		t.Error("client.TaskError is not ray.TaskError")
	}
	if te.Kind != "dependency" || te.Attempt != 1 || te.Cause == nil || te.Cause.Code != "E1" || te.Cause.Function != "g" {
		t.Errorf("task error %+v", te)
	}
	for _, want := range []error{ray.ErrTaskCancelled, ErrTaskCancelled, ray.ErrTaskFailed} {
		if !errors.Is(got, want) {
			t.Errorf("%v is not %v", got, want)
		}
	}
	if errors.Is(got, ray.ErrWorkerDied) {
		t.Errorf("%v is ErrWorkerDied", got)
	}
	if got.Error() != te.Error() {
		t.Errorf("message %q, want the TaskError's %q", got, te)
	}
	died := connect.NewError(connect.CodeAborted, errors.New("died"))
	d, _ = connect.NewErrorDetail(&rayhostv1.TaskError{Kind: "worker_died", Function: "f"})
	died.AddDetail(d)
	if err := fromConnect(died); !errors.Is(err, ray.ErrWorkerDied) || !errors.Is(err, ErrWorkerDied) || !errors.Is(err, ErrHost) {
		t.Errorf("worker died: %v", err)
	}
}
