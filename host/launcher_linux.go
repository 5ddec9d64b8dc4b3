package host

import (
	"os"
	"os/exec"
	"syscall"
)

// socketPair returns the two ends of a Unix stream socket pair, both
// close-on-exec (exec.Cmd dups the child's end to fd 3 without the flag).
func socketPair() (hostEnd, childEnd *os.File, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "worker-socket"), os.NewFile(uintptr(fds[1]), "host-socket"), nil
}

// dieWithHost makes the kernel kill the worker when the host dies
// (PR_SET_PDEATHSIG); no lifeline is needed.
func dieWithHost(cmd *exec.Cmd) (lifeline *os.File, err error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return nil, nil
}
