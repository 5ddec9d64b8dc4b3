package modules

import "errors"

// Errors of the registry and the policy. Their messages are the ones the
// host's API has always answered with; the host maps each to its own
// sentinel of the same name (and so to a Connect code).
var (
	// ErrInvalidModule: the bytes are not a Wasm module built with the guest
	// SDK, are too large or too complex, or failed to compile.
	ErrInvalidModule = errors.New("host: invalid module")
	// ErrModuleNotFound: no module with that digest or name is registered.
	ErrModuleNotFound = errors.New("host: module not found")
	// ErrModuleExists: a name already names another module, and the
	// registration did not ask to replace it.
	ErrModuleExists = errors.New("host: module name taken")
	// ErrFunctionNotFound: the module has no remote function of that name.
	ErrFunctionNotFound = errors.New("host: function not found")
	// ErrInvalidArgument: a malformed name, call, resource request or
	// environment variable.
	ErrInvalidArgument = errors.New("host: invalid argument")
	// ErrPermissionDenied: a grant outside what the host allows, or more
	// than the submitting task holds.
	ErrPermissionDenied = errors.New("host: permission denied")
	// ErrLimit: a request above one of the host's maximums (modules kept,
	// a task's memory limit or timeout).
	ErrLimit = errors.New("limit exceeded")
	// ErrInvalidConfig: a Config or PolicyConfig that New refuses.
	ErrInvalidConfig = errors.New("modules: invalid config")
)
