//go:build unix

package testutil

import (
	"os/exec"
	"syscall"
)

// setProcessGroup starts the host in a process group of its own, so that
// killProcessGroup takes its workers too.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killProcessGroup kills the host and its workers with SIGKILL.
func killProcessGroup(cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

// KillPID kills one process with SIGKILL, as a crash would.
func KillPID(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
