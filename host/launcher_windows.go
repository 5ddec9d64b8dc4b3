package host

import "context"

// Launch fails: workers talk to their host over a Unix socket pair passed as
// an inherited file descriptor, which Windows does not have.
func (l *ProcessLauncher) Launch(ctx context.Context, opts WorkerOptions) (Process, error) {
	return nil, ErrWorkersUnsupported
}

// processWorkersSupported reports why New cannot start worker processes.
func processWorkersSupported() error { return ErrWorkersUnsupported }
