//go:build unix

package launch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
)

// attempt is one way of starting a worker: confineAttempts lists them from
// the most confined; Launch falls back to the next when one cannot start
// (no user namespaces here, say).
type attempt struct {
	name  string
	apply func(cmd *exec.Cmd)
}

// Launch starts one worker process.
func (l *ProcessLauncher) Launch(ctx context.Context, opts WorkerOptions) (Process, error) {
	if len(l.Command) == 0 {
		return nil, ErrNoCommand
	}
	attempts := confineAttempts(opts)
	first := min(int(l.attempt.Load()), len(attempts)-1)
	var errs []error
	for i := first; i < len(attempts); i++ {
		p, err := l.launch(opts, attempts[i])
		if err == nil {
			if i != first {
				l.attempt.Store(int32(i))
			}
			return p, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", attempts[i].name, err))
		if i+1 < len(attempts) && l.Logger != nil {
			l.Logger.Warn("cannot start a worker this way; trying a less confined one", "way", attempts[i].name, "err", err, "next", attempts[i+1].name)
		}
	}
	return nil, fmt.Errorf("host: starting worker %v: %w", l.Command, errors.Join(errs...))
}

func (l *ProcessLauncher) launch(opts WorkerOptions, how attempt) (Process, error) {
	hostEnd, childEnd, err := socketPair()
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	defer childEnd.Close()
	conn, err := net.FileConn(hostEnd)
	hostEnd.Close()
	if err != nil {
		return nil, fmt.Errorf("worker socket: %w", err)
	}
	args := append(append([]string(nil), l.Command[1:]...), "--fd=3", "--cache="+opts.CacheDir)
	if opts.Confine {
		args = append(args, "--confine")
		for _, d := range opts.ReadDirs {
			args = append(args, "--read-dir="+d)
		}
		for _, d := range opts.WriteDirs {
			args = append(args, "--write-dir="+d)
		}
	}
	// The worker gets nothing of the host's environment (the token above
	// all): what it needs comes as flags.
	if dir := os.Getenv("RAYHOST_CPUPROFILE_DIR"); dir != "" {
		args = append(args, "--cpuprofile-dir="+dir)
	}
	cmd := exec.Command(l.Command[0], args...)
	cmd.Env = []string{}
	cmd.ExtraFiles = []*os.File{childEnd}
	cmd.Stdout = io.Discard
	cmd.Stderr = &logWriter{log: l.Logger}
	how.apply(cmd)
	// Workers die with the host even if the host is killed with SIGKILL.
	lifeline, err := dieWithHost(cmd)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("worker lifeline: %w", err)
	}
	err = cmd.Start()
	closeChildEnds(cmd)
	if err != nil {
		conn.Close()
		if lifeline != nil {
			lifeline.Close()
		}
		return nil, err
	}
	p := &process{cmd: cmd, conn: conn, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		if lifeline != nil {
			lifeline.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// closeChildEnds closes this process's copies of the files handed to the
// worker beyond the socket (fd 3), which launch closes itself.
func closeChildEnds(cmd *exec.Cmd) {
	for _, f := range cmd.ExtraFiles[1:] {
		f.Close()
	}
}

// Supported reports why this platform cannot start worker processes (nil:
// it can).
func Supported() error { return nil }
