package launch

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/rayhost/rayhost/internal/worker"
)

// Errors of launching workers.
var (
	// ErrWorkersUnsupported: this platform cannot run worker processes.
	ErrWorkersUnsupported = errors.New("rayhost: worker processes are not supported on GOOS=" + runtime.GOOS)
	// ErrNoCommand: a ProcessLauncher without a Command.
	ErrNoCommand = errors.New("launch: no worker command")
	// ErrBadReport: a worker's confinement report does not decode.
	ErrBadReport = errors.New("launch: unreadable confinement report")
)

// Launcher starts workers. The host uses processes (ProcessLauncher); unit
// tests may run workers in the same process (InProcessLauncher).
type Launcher interface {
	Launch(ctx context.Context, opts WorkerOptions) (Process, error)
}

// WorkerOptions are what a host tells a new worker.
type WorkerOptions struct {
	CacheDir string // wazero compilation cache
	// Confine asks for the worker's OS confinement (docs/SECURITY.md,
	// "Worker confinement"), where the platform has it.
	Confine bool
	// ReadDirs and WriteDirs are what a confined worker may read (the
	// modules) and read and write (the cache, the allowed directories).
	ReadDirs, WriteDirs []string
}

// Process is a running worker.
type Process interface {
	// Conn is the socket to the worker.
	Conn() io.ReadWriteCloser
	// Kill stops the worker at once (force cancel).
	Kill() error
	// Wait returns once the worker has exited.
	Wait() error
	// PID identifies the worker (its process id, or 0 in-process).
	PID() int
}

// ProcessLauncher starts `rayhost worker` processes, each with one end of a
// Unix socket pair as file descriptor 3. Worker processes need Unix sockets:
// on Windows, Launch fails with ErrWorkersUnsupported (and so does
// Supported).
type ProcessLauncher struct {
	Command []string // e.g. {"/usr/local/bin/rayhost", "worker"}
	Logger  *slog.Logger

	// attempt is the first way of starting a worker (confineAttempts) to
	// try: the ones before it failed on this machine.
	attempt atomic.Int32
}

type process struct {
	cmd  *exec.Cmd
	conn net.Conn
	done chan struct{}
	err  error
}

func (p *process) Conn() io.ReadWriteCloser { return p.conn }
func (p *process) PID() int                 { return p.cmd.Process.Pid }
func (p *process) Wait() error              { <-p.done; return p.err }

func (p *process) Kill() error {
	err := p.cmd.Process.Kill()
	p.conn.Close()
	return err
}

// logWriter turns a worker's stderr (Go runtime crashes, mostly) into host
// log records.
type logWriter struct{ log *slog.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	if w.log != nil {
		w.log.Warn("worker stderr", "output", string(p))
	}
	return len(p), nil
}

// InProcessLauncher runs workers as goroutines of this process. Guests then
// share the host's garbage collector, so use it for unit tests only. Kill
// acts as a process kill does for the caller: the worker's connection
// closes and Wait returns ErrKilled at once; the goroutine itself ends when
// its guest returns (wazero cannot stop a guest that sleeps or spins).
type InProcessLauncher struct{}

// ErrKilled is what Wait returns for an in-process worker that was killed.
var ErrKilled = errors.New("launch: in-process worker killed")

// Launch starts an in-process worker.
func (InProcessLauncher) Launch(ctx context.Context, opts WorkerOptions) (Process, error) {
	hostEnd, workerEnd := net.Pipe()
	cfg := worker.DefaultConfig()
	cfg.CacheDir = opts.CacheDir
	p := &goroutineProcess{conn: hostEnd, done: make(chan struct{}), killed: make(chan struct{})}
	go func() {
		p.err = worker.Run(context.Background(), workerEnd, cfg)
		close(p.done)
	}()
	return p, nil
}

type goroutineProcess struct {
	conn     net.Conn
	done     chan struct{}
	killed   chan struct{}
	err      error // set before done is closed
	killOnce sync.Once
}

func (p *goroutineProcess) Conn() io.ReadWriteCloser { return p.conn }
func (p *goroutineProcess) PID() int                 { return 0 }
func (p *goroutineProcess) Wait() error {
	select {
	case <-p.done:
		return p.err
	case <-p.killed:
		return ErrKilled
	}
}

func (p *goroutineProcess) Kill() error {
	p.killOnce.Do(func() {
		close(p.killed)
		p.conn.Close()
	})
	return nil
}
