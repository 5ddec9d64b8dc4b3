//go:build unix

package host

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
)

// Launch starts one worker process.
func (l *ProcessLauncher) Launch(ctx context.Context, opts WorkerOptions) (Process, error) {
	hostEnd, childEnd, err := socketPair()
	if err != nil {
		return nil, fmt.Errorf("host: socketpair: %w", err)
	}
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
	lifeline, err := dieWithHost(cmd)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("host: worker lifeline: %w", err)
	}
	err = cmd.Start()
	closeChildEnds(cmd)
	if err != nil {
		conn.Close()
		if lifeline != nil {
			lifeline.Close()
		}
		return nil, fmt.Errorf("host: starting worker %v: %w", l.Command, err)
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
// worker beyond the socket (fd 3), which Launch closes itself.
func closeChildEnds(cmd *exec.Cmd) {
	for _, f := range cmd.ExtraFiles[1:] {
		f.Close()
	}
}

// processWorkersSupported reports why New cannot start worker processes.
func processWorkersSupported() error { return nil }
