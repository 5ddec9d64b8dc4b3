package kinds

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
)

func TestTaskErrorIs(t *testing.T) {
	all := []error{ErrTaskFailed, ErrTaskCancelled, ErrWorkerDied, ErrTaskTimeout, ErrActorDied, ErrObjectLost, ErrOwnerDied, ErrGetTimeout}
	for _, c := range []struct {
		te   *TaskError
		want []error
	}{
		{&TaskError{Kind: "application"}, []error{ErrTaskFailed}},
		{&TaskError{Kind: "cancelled"}, []error{ErrTaskFailed, ErrTaskCancelled}},
		{&TaskError{Kind: "worker_died"}, []error{ErrTaskFailed, ErrWorkerDied}},
		{&TaskError{Kind: "timeout"}, []error{ErrTaskFailed, ErrTaskTimeout}},
		{&TaskError{Kind: "actor_died"}, []error{ErrTaskFailed, ErrActorDied}},
		{&TaskError{Kind: "object_lost"}, []error{ErrTaskFailed, ErrObjectLost}},
		{&TaskError{Kind: "owner_died"}, []error{ErrTaskFailed, ErrOwnerDied}},
		// Through a dependency: cancelled, actor died, lost and owner died
		// pass on; a dead worker does not (the argument's task may retry).
		{&TaskError{Kind: "dependency", Cause: &TaskError{Kind: "dependency", Cause: &TaskError{Kind: "cancelled"}}}, []error{ErrTaskFailed, ErrTaskCancelled}},
		{&TaskError{Kind: "dependency", Cause: &TaskError{Kind: "worker_died"}}, []error{ErrTaskFailed}},
		{&TaskError{Kind: "dependency", Cause: &TaskError{Kind: "object_lost"}}, []error{ErrTaskFailed, ErrObjectLost}},
		{&TaskError{Kind: "dependency", Cause: &TaskError{Kind: "owner_died"}}, []error{ErrTaskFailed, ErrOwnerDied}},
		{&TaskError{Kind: "dependency", Cause: &TaskError{Kind: "actor_died"}}, []error{ErrTaskFailed, ErrActorDied}},
	} {
		err := fmt.Errorf("wrapped: %w", c.te)
		for _, target := range all {
			want := false
			for _, w := range c.want {
				want = want || w == target
			}
			if got := errors.Is(err, target); got != want {
				t.Errorf("%s: errors.Is(%v) = %v", c.te.Error(), target, got)
			}
		}
	}
}

func TestABIRoundTrip(t *testing.T) {
	a := &abi.TaskError{Kind: abi.ErrorDependency, TaskID: "t1", Function: "f", Host: "h1", Attempt: 3, Message: "argument 2",
		Code: "E", Stack: "s", Cause: &abi.TaskError{Kind: abi.ErrorPanic, Message: "boom", Stack: "goroutine 1"}}
	te := FromABI(a)
	if te.Attempt != 3 || te.Cause == nil || te.Cause.Kind != "panic" || te.Cause.Stack != "goroutine 1" {
		t.Errorf("FromABI: %+v", te)
	}
	if back := ToABI(te); !reflect.DeepEqual(back, a) {
		t.Errorf("round trip: %+v, want %+v", back, a)
	}
	if FromABI(nil) != nil || ToABI(nil) != nil {
		t.Error("nil must stay nil")
	}
	want := "task f on h1 (attempt 3) failed: dependency: argument 2: task  (attempt 0) failed: panic: boom"
	if te.Error() != want {
		t.Errorf("Error() = %q, want %q", te.Error(), want)
	}
}

func TestClassed(t *testing.T) {
	a := Classed(ErrNotFound, "x: gone")
	b := fmt.Errorf("%w: more", a)
	if a.Error() != "x: gone" || !errors.Is(b, ErrNotFound) || !errors.Is(b, a) || errors.Is(b, ErrExists) {
		t.Errorf("%v", b)
	}
}

func TestKindNames(t *testing.T) {
	closed := Classed(ErrHostShuttingDown, "host: shutting down")
	if !errors.Is(closed, ErrUnavailable) || errors.Is(closed, ErrNotFound) {
		t.Errorf("a class of a class: %v", closed)
	}
	for _, err := range []error{ErrHostShuttingDown, ErrOwnerDied, ErrObjectLost} {
		wrapped := fmt.Errorf("x: %w", err)
		if Named(Name(wrapped)) != err {
			t.Errorf("%v: named %q, back %v", err, Name(wrapped), Named(Name(wrapped)))
		}
	}
	if Name(ErrUnavailable) != "" || Named("") != nil || Named("cancelled") != nil {
		t.Error("only the kinds Header carries have names")
	}
}
