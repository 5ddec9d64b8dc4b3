package ray

import (
	"errors"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/kinds"
)

// Sentinel errors. Errors returned by this package wrap them; test with
// errors.Is. The task sentinels (ErrGetTimeout, ErrTaskCancelled,
// ErrTaskFailed, ErrWorkerDied, ErrActorDied, ErrTaskTimeout, ErrObjectLost,
// ErrOwnerDied, ErrHostShuttingDown) are the same values as package
// client's.
var (
	// ErrGetTimeout: Get, GetAll or a generator's Next did not finish
	// before ctx's deadline. (Wait is not an error at its timeout: it
	// returns what is ready.)
	ErrGetTimeout = kinds.ErrGetTimeout
	// ErrTaskCancelled: the task was cancelled.
	ErrTaskCancelled = kinds.ErrTaskCancelled
	// ErrTaskFailed: the task that makes the object failed (see *TaskError).
	ErrTaskFailed = kinds.ErrTaskFailed
	// ErrWorkerDied: the worker process running the task died.
	ErrWorkerDied = kinds.ErrWorkerDied
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
	ErrActorDied = kinds.ErrActorDied
	// ErrTaskTimeout: the task ran past its Timeout and was stopped.
	ErrTaskTimeout = kinds.ErrTaskTimeout
	// ErrTooLarge: a value is larger than the host lets a task send.
	ErrTooLarge = errors.New("ray: value too large")
	// ErrObjectLost: every copy of the object died with the hosts that held
	// it, and it cannot be rebuilt (it was Put, or its task has no retries
	// left). Ray's ObjectLostError.
	ErrObjectLost = kinds.ErrObjectLost
	// ErrOwnerDied: the host that owns the object (the one its task or Put
	// was submitted to) is gone. Ray's OwnerDiedError.
	ErrOwnerDied = kinds.ErrOwnerDied
	// ErrObjectFreed: the object was freed because no reference to it was
	// left (its refs were all released); the ref read after that was stale
	// or forged. Ray's ObjectFreedError.
	ErrObjectFreed = kinds.ErrObjectFreed
	// ErrHostShuttingDown: the host a call waited on is shutting down (not
	// a cancel). A guest does not meet it today (its worker stops with its
	// host); it is here, the same value as package client's, so code shared
	// by drivers and native clients can name it.
	ErrHostShuttingDown = kinds.ErrHostShuttingDown
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
// stack, for a panic). It is the same type as client.TaskError, so a native
// client and a driver inside the cluster see one error:
//
//	Kind     string // application, panic, trap, worker_died, cancelled, dependency, infeasible… (guest-sdk/ABI.md §9)
//	TaskID   string // hex
//	Function string // the registered name; "main" for the driver
//	Host     string // the ID of the host that ran it ("local" in RunLocal)
//	Attempt  int    // 1 for the first run, as task events show it
//	Message  string
//	Code     string // the code given with WithCode
//	Stack    string // for a panic
//	Cause    *TaskError // the failure of an argument, for Kind "dependency"
//
// errors.Is(err, ErrTaskCancelled), ErrWorkerDied, ErrTaskTimeout,
// ErrActorDied, ErrObjectLost, ErrOwnerDied and ErrTaskFailed work on it.
type TaskError = kinds.TaskError

func taskErrorFrom(a *abi.TaskError) *TaskError { return kinds.FromABI(a) }

func taskErrorABI(e *TaskError) *abi.TaskError { return kinds.ToABI(e) }
