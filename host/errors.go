package host

import "github.com/rayhost/rayhost/host/internal/owner"

// Sentinel errors of the host. Each belongs to an API class of
// internal/kinds, which the API edge (host/internal/edge) maps to one
// Connect code, and package client maps the codes back.
var (
	// ErrModuleNotFound: no module with that digest or name is registered.
	ErrModuleNotFound = owner.ErrModuleNotFound
	// ErrFunctionNotFound: the module has no remote function of that name.
	ErrFunctionNotFound = owner.ErrFunctionNotFound
	// ErrObjectNotFound: the host knows no object with that ID.
	ErrObjectNotFound = owner.ErrObjectNotFound
	// ErrInvalidModule: the bytes are not a Wasm module built with the guest
	// SDK, or speak another ABI version.
	ErrInvalidModule = owner.ErrInvalidModule
	// ErrInvalidArgument: a request is malformed (bad JSON, wrong number of
	// arguments, invalid options…).
	ErrInvalidArgument = owner.ErrInvalidArgument
	// ErrGetTimeout: objects were not ready before the timeout.
	ErrGetTimeout = owner.ErrGetTimeout
	// ErrTaskNotFound: the host knows no task with that ID.
	ErrTaskNotFound = owner.ErrTaskNotFound
	// ErrPermissionDenied: a call asked for a capability the host does not
	// grant (a directory outside AllowedDirs), or a guest asked for one its
	// task does not hold (a child's grants must be a subset of its
	// parent's), or cancelled a task that is not its own.
	ErrPermissionDenied = owner.ErrPermissionDenied
	// ErrForgedID: a guest submitted a task or put an object under an ID
	// that is not derived from its own task. It wraps ErrPermissionDenied.
	ErrForgedID = owner.ErrForgedID
	// ErrClosed: the host is shutting down.
	ErrClosed = owner.ErrClosed
	// ErrObjectLost: every copy of an object is gone with the hosts that
	// held it, and it cannot be rebuilt (a Put object, or its task has no
	// retries left). A Get of it fails with a TaskError of kind object_lost.
	ErrObjectLost = owner.ErrObjectLost
	// ErrOwnerDied: the host that owns an object left or failed, so nobody
	// can say what it is any more. A Get fails with kind owner_died.
	ErrOwnerDied = owner.ErrOwnerDied
	// ErrModuleExists: a module name already names another module, and the
	// registration did not ask to replace it.
	ErrModuleExists = owner.ErrModuleExists
)
