package workerpool

import "errors"

// Sentinel errors of the worker pool.
var (
	// ErrInvalidConfig: New was given a Config it cannot work with.
	ErrInvalidConfig = errors.New("workerpool: invalid config")
	// ErrClosed: the pool is closed; it starts no more workers.
	ErrClosed = errors.New("workerpool: closed")
	// ErrFull: Config.Max workers are running or starting.
	ErrFull = errors.New("workerpool: at the maximum number of workers")
	// ErrStart: a worker did not start (Handler.StartFailed gets it,
	// wrapping the cause). Its text is what tasks that fail for want of a
	// worker have always said.
	ErrStart = errors.New("host: worker did not start")
	// ErrProtocol: a worker sent a frame it may not send (before Ready,
	// anything but Ready).
	ErrProtocol = errors.New("workerpool: worker protocol error")
	// ErrGone: a frame could not be written to a worker (it exited, or is
	// exiting).
	ErrGone = errors.New("workerpool: worker gone")
)
