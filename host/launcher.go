package host

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"github.com/rayhost/rayhost/internal/worker"
)

// Launcher starts workers. The host uses processes (ProcessLauncher); unit
// tests may run workers in the same process (InProcessLauncher).
type Launcher interface {
	Launch(ctx context.Context, opts WorkerOptions) (Process, error)
}

// WorkerOptions are what a host tells a new worker.
type WorkerOptions struct {
	CacheDir string // wazero compilation cache
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
// Unix socket pair as file descriptor 3.
type ProcessLauncher struct {
	Command []string // e.g. {"/usr/local/bin/rayhost", "worker"}
	Logger  *slog.Logger
}

// Launch starts one worker process.
func (l *ProcessLauncher) Launch(ctx context.Context, opts WorkerOptions) (Process, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("host: socketpair: %w", err)
	}
	hostEnd := os.NewFile(uintptr(fds[0]), "worker-socket")
	childEnd := os.NewFile(uintptr(fds[1]), "host-socket")
	defer childEnd.Close()
	conn, err := net.FileConn(hostEnd)
	hostEnd.Close()
	if err != nil {
		return nil, fmt.Errorf("host: worker socket: %w", err)
	}
	args := append(append([]string(nil), l.Command[1:]...), "--fd=3", "--cache="+opts.CacheDir)
	cmd := exec.Command(l.Command[0], args...)
	cmd.ExtraFiles = []*os.File{childEnd}
	cmd.Stdout = io.Discard
	cmd.Stderr = &logWriter{log: l.Logger}
	// Workers die with the host even if the host is killed with SIGKILL.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("host: starting worker %v: %w", l.Command, err)
	}
	p := &process{cmd: cmd, conn: conn, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
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
// share the host's garbage collector, so use it for unit tests only.
type InProcessLauncher struct{}

// Launch starts an in-process worker.
func (InProcessLauncher) Launch(ctx context.Context, opts WorkerOptions) (Process, error) {
	hostEnd, workerEnd := net.Pipe()
	cfg := worker.DefaultConfig()
	cfg.CacheDir = opts.CacheDir
	p := &goroutineProcess{conn: hostEnd, done: make(chan struct{})}
	go func() {
		p.err = worker.Run(context.Background(), workerEnd, cfg)
		close(p.done)
	}()
	return p, nil
}

type goroutineProcess struct {
	conn     net.Conn
	done     chan struct{}
	err      error
	killOnce sync.Once
}

func (p *goroutineProcess) Conn() io.ReadWriteCloser { return p.conn }
func (p *goroutineProcess) PID() int                 { return 0 }
func (p *goroutineProcess) Wait() error              { <-p.done; return p.err }
func (p *goroutineProcess) Kill() error {
	p.killOnce.Do(func() { p.conn.Close() })
	return nil
}
