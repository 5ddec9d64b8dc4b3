//go:build unix && !linux

package launch

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// socketPair returns the two ends of a Unix stream socket pair, both
// close-on-exec. Without SOCK_CLOEXEC the flag is set after the fact, under
// syscall.ForkLock so no concurrent fork inherits the fds in between.
func socketPair() (hostEnd, childEnd *os.File, err error) {
	syscall.ForkLock.RLock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "worker-socket"), os.NewFile(uintptr(fds[1]), "host-socket"), nil
}

// dieWithHost: there is no PR_SET_PDEATHSIG here. The worker gets the read
// end of a pipe as fd 4 (--lifeline-fd=4); the host keeps the write end,
// close-on-exec, and never writes to it. When the host dies, however it dies,
// the kernel closes the write end, the worker reads EOF and exits, even in
// the middle of a task. The host closes its end once the worker has exited.
func dieWithHost(cmd *exec.Cmd) (lifeline *os.File, err error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("pipe: %w", err)
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, r)
	cmd.Args = append(cmd.Args, fmt.Sprintf("--lifeline-fd=%d", 2+len(cmd.ExtraFiles)))
	return w, nil
}

// confineAttempts: no namespaces here; the worker reports its layers
// (mostly "not available").
func confineAttempts(opts WorkerOptions) []attempt {
	return []attempt{{name: "no namespaces", apply: func(*exec.Cmd) {}}}
}
