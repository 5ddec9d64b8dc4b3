//go:build !unix

package testutil

import (
	"os"
	"os/exec"
)

// setProcessGroup: no process groups here (hosts cannot run workers on
// these platforms anyway).
func setProcessGroup(cmd *exec.Cmd) {}

// killProcessGroup kills the host process.
func killProcessGroup(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

// KillPID kills one process at once.
func KillPID(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
