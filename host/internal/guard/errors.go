package guard

import "errors"

// Errors of the API's front door. Their messages are the ones the host's
// API has always answered with.
var (
	// ErrUnauthenticated: a call without the API token (or, to the peer
	// service, without a member's credential).
	ErrUnauthenticated = errors.New("host: missing or wrong token")
	// ErrRateLimited: a client called RegisterModule faster than
	// Config.RegisterRate allows.
	ErrRateLimited = errors.New("host: too many calls, slow down")
	// ErrInvalidConfig: a Config that New refuses.
	ErrInvalidConfig = errors.New("guard: invalid config")
)
