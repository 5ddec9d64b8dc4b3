package kinds

import (
	"fmt"

	"github.com/rayhost/rayhost/internal/abi"
)

// TaskError is the error of a task that failed, as every caller of Get sees
// it: which function, where, which attempt, and the guest's own message (and
// stack, for a panic). Package ray and package client name it (type
// aliases), so a *ray.TaskError and a *client.TaskError are one type.
type TaskError struct {
	Kind     string // application, panic, trap, worker_died, cancelled, dependency, infeasible… (guest-sdk/ABI.md §9)
	TaskID   string // hex
	Function string // the registered name; "main" for the driver
	Host     string // the ID of the host that ran it ("local" in RunLocal)
	Attempt  int    // 1 for the first run, as events and rayhost tasks show it (0: not known)
	Message  string
	Code     string // the code given with ray.WithCode
	Stack    string // for a panic
	// Cause is the failure of an argument, for Kind "dependency".
	Cause *TaskError
}

func (e *TaskError) Error() string {
	s := fmt.Sprintf("task %s", e.Function)
	if e.Host != "" {
		s += " on " + e.Host
	}
	s += fmt.Sprintf(" (attempt %d) failed: %s: %s", e.Attempt, e.Kind, e.Message)
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Is makes errors.Is(err, ErrTaskCancelled), ErrWorkerDied, ErrTaskFailed
// (and the other task sentinels) work on a *TaskError.
func (e *TaskError) Is(target error) bool {
	switch target {
	case ErrTaskFailed:
		return true
	case ErrTaskCancelled:
		return e.Kind == string(abi.ErrorCancelled) || (e.Cause != nil && e.Cause.Is(target))
	case ErrWorkerDied:
		return e.Kind == string(abi.ErrorWorkerDied)
	case ErrTaskTimeout:
		return e.Kind == string(abi.ErrorTimeout)
	case ErrActorDied:
		return e.Kind == string(abi.ErrorActorDied) || (e.Cause != nil && e.Cause.Is(target))
	case ErrObjectLost:
		return e.Kind == string(abi.ErrorObjectLost) || (e.Cause != nil && e.Cause.Is(target))
	case ErrOwnerDied:
		return e.Kind == string(abi.ErrorOwnerDied) || (e.Cause != nil && e.Cause.Is(target))
	case ErrObjectFreed:
		return e.Kind == string(abi.ErrorObjectFreed) || (e.Cause != nil && e.Cause.Is(target))
	}
	return false
}

// FromABI converts the ABI's TaskError (nil stays nil).
func FromABI(a *abi.TaskError) *TaskError {
	if a == nil {
		return nil
	}
	return &TaskError{
		Kind: string(a.Kind), TaskID: a.TaskID, Function: a.Function, Host: a.Host,
		Attempt: int(a.Attempt), Message: a.Message, Code: a.Code, Stack: a.Stack, Cause: FromABI(a.Cause),
	}
}

// ToABI converts e to the ABI's TaskError (nil stays nil).
func ToABI(e *TaskError) *abi.TaskError {
	if e == nil {
		return nil
	}
	return &abi.TaskError{Kind: abi.ErrorKind(e.Kind), TaskID: e.TaskID, Function: e.Function, Host: e.Host,
		Attempt: uint32(e.Attempt), Message: e.Message, Code: e.Code, Stack: e.Stack, Cause: ToABI(e.Cause)}
}
