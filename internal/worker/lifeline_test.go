//go:build unix

package worker_test

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rayhost/rayhost/internal/ipc"
	"github.com/rayhost/rayhost/internal/testutil"
)

// TestLifeline: a worker started with --lifeline-fd (how hosts without
// PR_SET_PDEATHSIG start them) exits when the pipe's write end closes, as it
// does when the host dies, even though its socket to the host is still open.
func TestLifeline(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	hostFile, childSock := os.NewFile(uintptr(fds[0]), "host"), os.NewFile(uintptr(fds[1]), "child")
	hostConn, err := net.FileConn(hostFile)
	hostFile.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer hostConn.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(testutil.RayhostBinary(t), "worker", "--fd=3", "--lifeline-fd=4")
	cmd.ExtraFiles = []*os.File{childSock, r}
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	childSock.Close()
	r.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer cmd.Process.Kill()

	conn := ipc.NewConn(hostConn)
	if typ, _, err := conn.Read(nil); err != nil || typ != ipc.TypeReady {
		t.Fatalf("first frame: %v, %v; want Ready", typ, err)
	}
	w.Close() // the host "dies"
	select {
	case err := <-done:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("worker exit: %v; want status 1", err)
		}
		if !strings.Contains(stderr.String(), "host gone") {
			t.Fatalf("stderr %q does not say the host is gone", stderr.String())
		}
	case <-time.After(60 * time.Second): // hang guard
		t.Fatal("worker still running after its lifeline closed")
	}
}
