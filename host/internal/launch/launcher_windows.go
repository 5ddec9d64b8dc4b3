package launch

import "context"

// Launch fails: workers talk to their host over a Unix socket pair passed as
// an inherited file descriptor, which Windows does not have.
func (l *ProcessLauncher) Launch(ctx context.Context, opts WorkerOptions) (Process, error) {
	return nil, ErrWorkersUnsupported
}

// Supported reports why this platform cannot start worker processes:
// ErrWorkersUnsupported.
func Supported() error { return ErrWorkersUnsupported }
