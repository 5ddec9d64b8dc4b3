package owner

import (
	"fmt"

	"github.com/rayhost/rayhost/host/internal/edge"
	"github.com/rayhost/rayhost/host/internal/objdir"
	"github.com/rayhost/rayhost/internal/kinds"
)

// Sentinel errors of the host. Each belongs to an API class of
// internal/kinds, which the API edge (host/internal/edge) maps to one
// Connect code, and package client maps the codes back.
var (
	// ErrModuleNotFound: no module with that digest or name is registered.
	ErrModuleNotFound = kinds.Classed(kinds.ErrNotFound, "host: module not found")
	// ErrFunctionNotFound: the module has no remote function of that name.
	ErrFunctionNotFound = kinds.Classed(kinds.ErrNotFound, "host: function not found")
	// ErrObjectNotFound: the host knows no object with that ID.
	ErrObjectNotFound = objdir.ErrNotFound
	// ErrInvalidModule: the bytes are not a Wasm module built with the guest
	// SDK, or speak another ABI version.
	ErrInvalidModule = kinds.Classed(kinds.ErrInvalidArgument, "host: invalid module")
	// ErrInvalidArgument: a request is malformed (bad JSON, wrong number of
	// arguments, invalid options…).
	ErrInvalidArgument = kinds.Classed(kinds.ErrInvalidArgument, "host: invalid argument")
	// ErrGetTimeout: objects were not ready before the timeout.
	ErrGetTimeout = objdir.ErrTimeout
	// ErrTaskNotFound: the host knows no task with that ID.
	ErrTaskNotFound = kinds.Classed(kinds.ErrNotFound, "host: task not found")
	// ErrPermissionDenied: a call asked for a capability the host does not
	// grant (a directory outside AllowedDirs), or a guest asked for one its
	// task does not hold (a child's grants must be a subset of its
	// parent's), or cancelled a task that is not its own.
	ErrPermissionDenied = kinds.Classed(kinds.ErrPermission, "host: permission denied")
	// ErrForgedID: a guest submitted a task or put an object under an ID
	// that is not derived from its own task. It wraps ErrPermissionDenied.
	ErrForgedID = fmt.Errorf("%w: forged ID", ErrPermissionDenied)
	// ErrClosed: the host is shutting down. It is kinds.ErrHostShuttingDown's
	// (and so kinds.ErrUnavailable's), never a cancel: the calls the
	// shutdown ends (a Get, a Wait, a driver) end with it.
	ErrClosed = kinds.Classed(kinds.ErrHostShuttingDown, "host: shutting down")
	// ErrObjectLost: every copy of an object is gone with the hosts that
	// held it, and it cannot be rebuilt (a Put object, or its task has no
	// retries left). A Get of it fails with a TaskError of kind object_lost.
	ErrObjectLost = objdir.ErrLost
	// ErrOwnerDied: the host that owns an object left or failed, so nobody
	// can say what it is any more. A Get fails with kind owner_died.
	ErrOwnerDied = objdir.ErrOwnerDied
	// ErrModuleExists: a module name already names another module, and the
	// registration did not ask to replace it.
	ErrModuleExists = kinds.Classed(kinds.ErrExists, "host: module name taken")
)

// errLimit marks a submission refused by a limit.
var errLimit = kinds.Classed(kinds.ErrResourceExhausted, "limit exceeded")

// toConnect and invalid are the edge's, for the peer protocol's handlers.
func toConnect(err error) error { return edge.ToConnect(err) }

func invalid(format string, args ...any) error { return edge.Invalid(format, args...) }
