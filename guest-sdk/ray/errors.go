package ray

import (
	"errors"
	"fmt"

	"github.com/rayhost/rayhost/internal/abi"
)

// Sentinel errors. Errors returned by this package wrap them; test with
// errors.Is.
var (
	// ErrGetTimeout: Get, GetAll or a generator's Next did not finish
	// before ctx's deadline. (Wait is not an error at its timeout: it
	// returns what is ready.)
	ErrGetTimeout = errors.New("ray: get timed out")
	// ErrTaskCancelled: the task was cancelled.
	ErrTaskCancelled = errors.New("ray: task cancelled")
	// ErrTaskFailed: the task that makes the object failed (see *TaskError).
	ErrTaskFailed = errors.New("ray: task failed")
	// ErrWorkerDied: the worker process running the task died.
	ErrWorkerDied = errors.New("ray: worker died")
	// ErrBadArgument: an argument has the wrong type or count, or does not
	// encode.
	ErrBadArgument = errors.New("ray: bad argument")
	// ErrDecode: a value does not decode into the requested Go type.
	ErrDecode = errors.New("ray: cannot decode value")
	// ErrNotInGuest: the call needs a rayhost host; the program is not
	// running as a rayhost guest, nor inside RunLocal.
	ErrNotInGuest = errors.New("ray: not running inside rayhost")
	// ErrHost: the host refused or failed a request.
	ErrHost = errors.New("ray: host error")
	// ErrEndOfStream: a generator has no more items.
	ErrEndOfStream = errors.New("ray: end of stream")
	// ErrNotFound: no actor has the name GetActor was given.
	ErrNotFound = errors.New("ray: not found")
	// ErrActorDied: the actor is dead (killed, or out of restarts).
	ErrActorDied = errors.New("ray: actor died")
	// ErrTaskTimeout: the task ran past its Timeout and was stopped.
	ErrTaskTimeout = errors.New("ray: task timed out")
	// ErrTooLarge: a value is larger than the host lets a task send.
	ErrTooLarge = errors.New("ray: value too large")
	// ErrObjectLost: every copy of the object died with the hosts that held
	// it, and it cannot be rebuilt (it was Put, or its task has no retries
	// left). Ray's ObjectLostError.
	ErrObjectLost = errors.New("ray: object lost")
	// ErrOwnerDied: the host that owns the object (the one its task or Put
	// was submitted to) is gone. Ray's OwnerDiedError.
	ErrOwnerDied = errors.New("ray: owner died")
)

// WithCode attaches an application error code to err. The caller's
// TaskError carries it in Code, and RetryExceptions(code) retries it.
func WithCode(code string, err error) error { return &codedError{code: code, err: err} }

type codedError struct {
	code string
	err  error
}

func (e *codedError) Error() string     { return e.err.Error() }
func (e *codedError) Unwrap() error     { return e.err }
func (e *codedError) ErrorCode() string { return e.code }

// TaskError is the error of a task that failed, as every caller of Get sees
// it: which function, where, which attempt, and the guest's own message (and
// stack, for a panic).
type TaskError struct {
	Kind     string // application, panic, trap, worker_died, cancelled, dependency, infeasible… (guest-sdk/ABI.md §9)
	TaskID   string // hex
	Function string // the registered name; "main" for the driver
	Host     string // the ID of the host that ran it ("local" in RunLocal)
	Attempt  int    // 0 for the first run
	Message  string
	Code     string // the code given with WithCode
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

// Is makes errors.Is(err, ErrTaskCancelled), ErrWorkerDied and ErrTaskFailed
// work on a *TaskError.
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
	}
	return false
}

func taskErrorFrom(a *abi.TaskError) *TaskError {
	if a == nil {
		return nil
	}
	return &TaskError{
		Kind: string(a.Kind), TaskID: a.TaskID, Function: a.Function, Host: a.Host,
		Attempt: int(a.Attempt), Message: a.Message, Code: a.Code, Stack: a.Stack, Cause: taskErrorFrom(a.Cause),
	}
}

func (e *TaskError) abi() *abi.TaskError {
	if e == nil {
		return nil
	}
	return &abi.TaskError{Kind: abi.ErrorKind(e.Kind), TaskID: e.TaskID, Function: e.Function, Host: e.Host,
		Attempt: uint32(e.Attempt), Message: e.Message, Code: e.Code, Stack: e.Stack, Cause: e.Cause.abi()}
}
