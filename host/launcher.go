package host

import "github.com/rayhost/rayhost/host/internal/launch"

// Worker launchers (see package launch); Config.Launcher names them.
type (
	// Launcher starts workers. The host uses processes (ProcessLauncher);
	// unit tests may run workers in the same process (InProcessLauncher).
	Launcher = launch.Launcher
	// WorkerOptions are what a host tells a new worker.
	WorkerOptions = launch.WorkerOptions
	// Process is a running worker.
	Process = launch.Process
	// ProcessLauncher starts `rayhost worker` processes, each with one end
	// of a Unix socket pair as file descriptor 3. On Windows, Launch fails
	// with ErrWorkersUnsupported (and so does New for a host without its
	// own Launcher).
	ProcessLauncher = launch.ProcessLauncher
	// InProcessLauncher runs workers as goroutines of this process. Guests
	// then share the host's garbage collector, so use it for unit tests
	// only.
	InProcessLauncher = launch.InProcessLauncher
)

// ErrWorkersUnsupported: this platform cannot run worker processes.
var ErrWorkersUnsupported = launch.ErrWorkersUnsupported
