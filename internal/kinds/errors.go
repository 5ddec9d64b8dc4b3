package kinds

import "errors"

// Task sentinels: what a Get of a failed or missing object matches, in a
// guest (package ray) and in a native client (package client) alike. Their
// messages keep the "ray:" prefix they have always had.
var (
	// ErrGetTimeout: Get, GetAll or a generator's Next did not finish
	// before its deadline.
	ErrGetTimeout = errors.New("ray: get timed out")
	// ErrTaskCancelled: the task was cancelled.
	ErrTaskCancelled = errors.New("ray: task cancelled")
	// ErrTaskFailed: the task that makes the object failed (see *TaskError).
	ErrTaskFailed = errors.New("ray: task failed")
	// ErrWorkerDied: the worker process running the task died.
	ErrWorkerDied = errors.New("ray: worker died")
	// ErrActorDied: the actor is dead (killed, or out of restarts).
	ErrActorDied = errors.New("ray: actor died")
	// ErrTaskTimeout: the task ran past its Timeout and was stopped.
	ErrTaskTimeout = errors.New("ray: task timed out")
	// ErrObjectLost: every copy of the object died with the hosts that held
	// it, and it cannot be rebuilt. Ray's ObjectLostError.
	ErrObjectLost = errors.New("ray: object lost")
	// ErrOwnerDied: the host that owns the object is gone. Ray's
	// OwnerDiedError.
	ErrOwnerDied = errors.New("ray: owner died")
	// ErrObjectFreed: the object was freed because no reference to it was
	// left; the ref read after that was released, stale or forged. Ray's
	// ObjectFreedError.
	ErrObjectFreed = errors.New("ray: object freed")
)

// API classes: one per Connect code the host answers with. Package client
// returns them (wrapped) for the code of a failed call; the host's own
// sentinels belong to one each (see Classed), which is how its API edge
// picks the code. ErrGetTimeout is the class of a deadline.
var (
	ErrNotFound        = errors.New("rayhost: not found")
	ErrInvalidArgument = errors.New("rayhost: invalid argument")
	ErrPermission      = errors.New("rayhost: permission denied")
	ErrUnavailable     = errors.New("rayhost: host unavailable")
	ErrUnauthenticated = errors.New("rayhost: unauthenticated")
	// ErrResourceExhausted: a limit was hit (a message or value too large,
	// the store full, a cap on tasks, drivers or modules).
	ErrResourceExhausted = errors.New("rayhost: resource exhausted")
	ErrHost              = errors.New("rayhost: host error")
	// ErrExists: a name is taken.
	ErrExists = errors.New("rayhost: already exists")
	// ErrHostShuttingDown: the host is shutting down, so a call that was
	// waiting there (a Get, a Wait, a driver) ended without an answer. It is
	// no cancel: nobody cancelled anything, and asking another host (or this
	// one once it is back) may work. It matches ErrUnavailable too.
	ErrHostShuttingDown = Classed(ErrUnavailable, "rayhost: host shutting down")
)

// Header is the response header (Connect error metadata) in which the host
// names the kind of an error whose Connect code alone does not say it (a
// host shutting down is one kind of unavailable): its value is Name's.
// Package client maps it back with Named.
const Header = "Rayhost-Error-Kind"

// kindNames are the kinds Header carries.
var kindNames = []struct {
	err  error
	name string
}{
	{ErrHostShuttingDown, "host_shutting_down"},
	{ErrOwnerDied, "owner_died"},
	{ErrObjectLost, "object_lost"},
	{ErrObjectFreed, "object_freed"},
}

// Name is the name Header gives err's kind, "" if it has none.
func Name(err error) string {
	for _, k := range kindNames {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return ""
}

// Named is the sentinel of the kind name (Name's), nil if there is none.
func Named(name string) error {
	for _, k := range kindNames {
		if k.name == name {
			return k.err
		}
	}
	return nil
}

// Classed returns a sentinel error whose message is msg and which matches
// class with errors.Is (and what class matches, and nothing else but
// itself). A package declares
// its sentinels with it, so that the API edge maps them to class's code
// without knowing them:
//
//	var ErrModuleNotFound = kinds.Classed(kinds.ErrNotFound, "host: module not found")
func Classed(class error, msg string) error { return &classed{msg: msg, class: class} }

type classed struct {
	msg   string
	class error
}

func (e *classed) Error() string        { return e.msg }
func (e *classed) Is(target error) bool { return target == e.class || errors.Is(e.class, target) }
