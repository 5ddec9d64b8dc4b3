package confine

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The tests run attacks in a child: this test binary, re-run with
// CONFINE_TEST_ATTACK set, confines itself with Apply, prints its layers as
// one JSON line, then tries the attack and prints what happened.
func TestMain(m *testing.M) {
	if attack := os.Getenv("CONFINE_TEST_ATTACK"); attack != "" {
		os.Exit(child(attack, os.Getenv("CONFINE_TEST_DIR")))
	}
	os.Exit(m.Run())
}

func child(attack, dir string) int {
	layers := Apply(Options{WriteDirs: []string{dir}})
	b, _ := json.Marshal(layers)
	fmt.Printf("%s\n", b)
	var err error
	switch attack {
	case "nothing":
	case "ptrace":
		err = unix.PtraceAttach(os.Getppid())
	case "unshare":
		err = unix.Unshare(unix.CLONE_NEWNS)
	case "execve":
		err = syscall.Exec("/bin/true", []string{"true"}, nil)
	case "bpf":
		_, _, e := unix.Syscall(unix.SYS_BPF, 0, 0, 0)
		err = e
	case "mount":
		err = unix.Mount("none", dir, "tmpfs", 0, "")
	case "socket":
		var fd int
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0); err == nil {
			unix.Close(fd)
		}
	case "kill-parent":
		err = unix.Kill(os.Getppid(), 0)
	case "fork":
		// A process, not a thread: refused before it exists.
		r, _, e := unix.RawSyscall6(unix.SYS_CLONE, uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
		if e == 0 && r == 0 {
			unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0) // the child, were it made
		}
		if e != 0 {
			err = e
		}
	case "read-outside":
		_, err = os.ReadFile("/etc/hostname")
	case "proc-environ":
		_, err = os.ReadFile(fmt.Sprintf("/proc/%d/environ", os.Getppid()))
	case "write-inside":
		if err = os.WriteFile(filepath.Join(dir, "f"), []byte("ok"), 0o600); err == nil {
			var got []byte
			got, err = os.ReadFile(filepath.Join(dir, "f"))
			if err == nil && string(got) != "ok" {
				err = errors.New("read back " + string(got))
			}
		}
	default:
		err = errors.New("unknown attack")
	}
	if err != nil {
		fmt.Println("error:", err)
	} else {
		fmt.Println("ok")
	}
	return 0
}

// run runs one attack in a confined child and returns its layers, its last
// line and how it ended.
func run(t *testing.T, attack string) (map[string]Layer, string, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = []string{"CONFINE_TEST_ATTACK=" + attack, "CONFINE_TEST_DIR=" + t.TempDir()}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	sc := bufio.NewScanner(bytes.NewReader(out))
	layers := map[string]Layer{}
	var last string
	for i := 0; sc.Scan(); i++ {
		if i == 0 {
			var ls []Layer
			if err := json.Unmarshal(sc.Bytes(), &ls); err != nil {
				t.Fatalf("child's first line %q: %v (stderr %s)", sc.Text(), err, stderr.String())
			}
			for _, l := range ls {
				layers[l.Name] = l
			}
			continue
		}
		last = sc.Text()
	}
	t.Logf("%s: %q, %v", attack, last, runErr)
	return layers, last, runErr
}

func killedBySIGSYS(err error) bool {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return false
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGSYS
}

// TestConfinedChildStillWorks: a confined Go process keeps running (its
// runtime's calls are all allowed) and may write inside its directories.
func TestConfinedChildStillWorks(t *testing.T) {
	layers, last, err := run(t, "write-inside")
	if err != nil || last != "ok" {
		t.Fatalf("write inside the allowed directory: %q, %v", last, err)
	}
	for _, name := range []string{LayerNoNewPrivs, LayerCapabilities, LayerRlimits, LayerSeccomp} {
		if l := layers[name]; !l.Active {
			t.Errorf("layer %s not active: %s", name, l.Detail)
		}
	}
	for _, l := range layers {
		t.Logf("%-18s %-5v %s", l.Name, l.Active, l.Detail)
	}
}

// TestSeccompKillsDangerousCalls: ptrace, unshare, execve, bpf and mount
// end the process with SIGSYS.
func TestSeccompKillsDangerousCalls(t *testing.T) {
	for _, attack := range []string{"ptrace", "unshare", "execve", "bpf", "mount"} {
		t.Run(attack, func(t *testing.T) {
			layers, last, err := run(t, attack)
			if !layers[LayerSeccomp].Active {
				t.Skipf("no seccomp here: %s", layers[LayerSeccomp].Detail)
			}
			if !killedBySIGSYS(err) {
				t.Fatalf("%s: the child ended with %v (last line %q), want killed by SIGSYS", attack, err, last)
			}
		})
	}
}

// TestSeccompRefusesOtherCalls: calls off the allow list that are not
// dangerous enough to kill for fail with EPERM; signals only reach the
// worker itself, and a clone that is not a thread is refused.
func TestSeccompRefusesOtherCalls(t *testing.T) {
	for _, attack := range []string{"socket", "kill-parent", "fork"} {
		t.Run(attack, func(t *testing.T) {
			layers, last, err := run(t, attack)
			if !layers[LayerSeccomp].Active {
				t.Skipf("no seccomp here: %s", layers[LayerSeccomp].Detail)
			}
			if err != nil || !strings.Contains(last, "operation not permitted") {
				t.Fatalf("%s: %q, %v; want EPERM and a live process", attack, last, err)
			}
		})
	}
}

// TestLandlockConfinesFiles: outside its directories the process can read
// nothing, /proc included (the host's environment is there).
func TestLandlockConfinesFiles(t *testing.T) {
	for _, attack := range []string{"read-outside", "proc-environ"} {
		t.Run(attack, func(t *testing.T) {
			layers, last, err := run(t, attack)
			if !layers[LayerLandlock].Active {
				t.Skipf("no Landlock here: %s", layers[LayerLandlock].Detail)
			}
			if err != nil || !strings.Contains(last, "permission denied") {
				t.Fatalf("%s: %q, %v; want permission denied", attack, last, err)
			}
		})
	}
}
