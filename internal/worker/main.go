package worker

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/rayhost/rayhost/internal/confine"
)

// Main is `rayhost worker`: it serves the host on the socket the host passed
// as file descriptor --fd. It returns when the host closes the socket.
func Main(args []string) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fd := fs.Int("fd", 3, "file descriptor of the socket to the host")
	cfg := DefaultConfig()
	fs.StringVar(&cfg.CacheDir, "cache", "", "wazero compilation cache directory")
	pages := fs.Uint("memory-limit-pages", 0, "guest memory limit in 64 KiB pages (0: 4 GiB)")
	confined := fs.Bool("confine", false, "confine the worker (seccomp, Landlock, no_new_privs, rlimits) before it loads a guest")
	var readDirs, writeDirs dirList
	fs.Var(&readDirs, "read-dir", "with --confine: a directory the worker may read (repeatable)")
	fs.Var(&writeDirs, "write-dir", "with --confine: a directory the worker may read and write (repeatable)")
	profileDir := fs.String("cpuprofile-dir", "", "write a CPU profile of the worker into this directory")
	lifeline := fs.Int("lifeline-fd", -1, "file descriptor of a pipe the host holds open: exit when it closes (where the kernel cannot kill the worker with its host)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.MemoryLimitPages = uint32(*pages)
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	f := os.NewFile(uintptr(*fd), "host-socket")
	if f == nil {
		return fmt.Errorf("worker: fd %d is not open", *fd)
	}
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("worker: fd %d: %w", *fd, err)
	}
	// The host owns the worker's lifetime: it closes the socket to stop it.
	// Ignore the terminal's ^C, which the host also receives.
	signal.Ignore(syscall.SIGINT)
	// For `rayhost microbenchmark --profile`: a CPU profile per worker.
	// The file is opened before the worker is confined.
	if dir := *profileDir; dir != "" {
		if f, err := os.Create(filepath.Join(dir, fmt.Sprintf("worker-%d.pprof", os.Getpid()))); err == nil {
			defer f.Close() // deferred first, so it runs after the profile is written
			if pprof.StartCPUProfile(f) == nil {
				defer pprof.StopCPUProfile()
			}
		}
	}
	// Confined last, before Run loads any guest: the filters cannot be
	// lifted, and the seccomp filter forbids what setting them up needs.
	if *confined {
		cfg.Confinement = confine.Apply(confine.Options{ReadDirs: readDirs, WriteDirs: writeDirs})
	} else {
		cfg.Confinement = confine.Off("turned off on the host (worker confinement disabled)")
	}
	if *lifeline < 0 {
		return Run(context.Background(), conn, cfg)
	}
	lf := os.NewFile(uintptr(*lifeline), "lifeline")
	if lf == nil {
		return fmt.Errorf("worker: lifeline fd %d is not open", *lifeline)
	}
	hostGone := make(chan struct{})
	go func() {
		// The host never writes: a read returns only when it has gone.
		_, _ = lf.Read(make([]byte, 1))
		close(hostGone)
	}()
	done := make(chan error, 1)
	go func() { done <- Run(context.Background(), conn, cfg) }()
	select {
	case err := <-done:
		return err
	case <-hostGone:
		// Returning ends the process, a guest in the middle of a task too.
		return ErrHostGone
	}
}

// dirList is a repeatable flag.
type dirList []string

func (d *dirList) String() string     { return strings.Join(*d, ",") }
func (d *dirList) Set(v string) error { *d = append(*d, v); return nil }

// ErrHostGone: the worker's host died (its lifeline closed).
var ErrHostGone = errors.New("worker: host gone")
