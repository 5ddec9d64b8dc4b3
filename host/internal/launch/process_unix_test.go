//go:build unix

package launch_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/rayhost/rayhost/host/internal/launch"
	"github.com/rayhost/rayhost/internal/testutil/build"
)

// The tests start this test binary as the "worker" (a real process, not a
// rayhost worker): with "launch-helper" as its first argument it reports
// what it was given over fd 3 and waits for its host.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "launch-helper" {
		os.Exit(helper(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// report is what the helper saw of its start.
type report struct {
	Args []string
	Env  []string
	// Sockets are the open socket descriptors above 2 (the race
	// detector's runtime opens files of its own, so only sockets tell
	// what was inherited of the host's).
	Sockets []int
	PID     int
}

func helper(args []string) int {
	// First, before anything opens files of its own: which descriptors
	// were inherited.
	var socks []int
	for fd := 3; fd < 1024; fd++ {
		var st syscall.Stat_t
		if syscall.Fstat(fd, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFSOCK {
			socks = append(socks, fd)
		}
	}
	if slices.Contains(args, "say-hello") {
		fmt.Fprintln(os.Stderr, "hello from the worker")
	}
	for _, a := range args {
		if n, ok := strings.CutPrefix(a, "--lifeline-fd="); ok {
			fd, _ := strconv.Atoi(n)
			go func() {
				_, _ = io.Copy(io.Discard, os.NewFile(uintptr(fd), "lifeline"))
				os.Exit(3) // the host is gone
			}()
		}
	}
	conn, err := net.FileConn(os.NewFile(3, "socket"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	b, _ := json.Marshal(report{Args: args, Env: os.Environ(), Sockets: socks, PID: os.Getpid()})
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return 2
	}
	_, _ = io.Copy(io.Discard, conn) // until the host closes its end
	return 0
}

func helperLauncher(t *testing.T, log *slog.Logger, extra ...string) *launch.ProcessLauncher {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return &launch.ProcessLauncher{Command: append([]string{exe, "launch-helper"}, extra...), Logger: log}
}

func readReport(t *testing.T, p launch.Process) report {
	t.Helper()
	line, err := bufio.NewReader(p.Conn()).ReadBytes('\n')
	if err != nil {
		t.Fatalf("reading the worker's report: %v", err)
	}
	var r report
	if err := json.Unmarshal(line, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestProcessLauncher: a worker process gets the socket as fd 3 and no
// other socket of the host (not the host's end of the socket pair, not a
// listener the host has open); an empty environment (the host's token is
// not in it); its options as flags; its stderr goes to the host's log. It
// exits when the host closes the socket.
func TestProcessLauncher(t *testing.T) {
	t.Setenv("RAYHOST_TOKEN", "secret-the-worker-must-not-see")
	ln, err := net.Listen("tcp", "127.0.0.1:0") // the host's API, say
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var logs build.LogBuffer
	l := helperLauncher(t, slog.New(slog.NewTextHandler(&logs, nil)), "say-hello")
	cache := t.TempDir()
	p, err := l.Launch(ctxFor(t), launch.WorkerOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	r := readReport(t, p)
	if len(r.Env) != 0 {
		t.Errorf("the worker has an environment: %q", r.Env)
	}
	if r.PID != p.PID() || r.PID <= 0 {
		t.Errorf("PID %d, the worker says %d", p.PID(), r.PID)
	}
	for _, want := range []string{"say-hello", "--fd=3", "--cache=" + cache} {
		if !slices.Contains(r.Args, want) {
			t.Errorf("args %q lack %q", r.Args, want)
		}
	}
	if slices.Contains(r.Args, "--confine") {
		t.Errorf("args %q ask for confinement", r.Args)
	}
	if !slices.Equal(r.Sockets, []int{3}) {
		t.Errorf("the worker has sockets %v, want only [3]", r.Sockets)
	}
	if err := p.Conn().Close(); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(t, p); err != nil {
		t.Fatalf("a worker whose host closed its socket: %v, want a clean exit", err)
	}
	if !strings.Contains(logs.String(), "hello from the worker") {
		t.Errorf("the worker's stderr is not in the log: %q", logs.String())
	}
}

// TestProcessLauncherConfined: with Confine, the worker gets its
// directories as flags, and starts (confined as far as this machine
// allows: the launcher falls back); Kill stops it.
func TestProcessLauncherConfined(t *testing.T) {
	l := helperLauncher(t, nil)
	opts := launch.WorkerOptions{CacheDir: t.TempDir(), Confine: true,
		ReadDirs: []string{filepath.Join(t.TempDir(), "modules")}, WriteDirs: []string{t.TempDir(), "/srv/data"}}
	for i := range 2 { // the second starts the way that worked
		p, err := l.Launch(ctxFor(t), opts)
		if err != nil {
			t.Fatal(err)
		}
		r := readReport(t, p)
		want := []string{"--confine", "--read-dir=" + opts.ReadDirs[0], "--write-dir=" + opts.WriteDirs[0], "--write-dir=/srv/data"}
		for _, a := range want {
			if !slices.Contains(r.Args, a) {
				t.Errorf("launch %d: args %q lack %q", i, r.Args, a)
			}
		}
		if err := p.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := waitFor(t, p); err == nil {
			t.Fatal("a killed worker exited cleanly")
		}
	}
}

// TestProcessLauncherLeaksNothing: a launch that fails leaves no descriptor
// behind.
func TestProcessLauncherLeaksNothing(t *testing.T) {
	before := openFDs()
	l := &launch.ProcessLauncher{Command: []string{filepath.Join(t.TempDir(), "missing")}}
	for range 5 {
		if _, err := l.Launch(context.Background(), launch.WorkerOptions{Confine: true}); err == nil {
			t.Fatal("a missing binary started")
		}
	}
	if after := openFDs(); after > before {
		t.Fatalf("%d descriptors open after failed launches, %d before", after, before)
	}
}

func openFDs() int {
	n := 0
	for fd := 0; fd < 1024; fd++ {
		var st syscall.Stat_t
		if syscall.Fstat(fd, &st) == nil {
			n++
		}
	}
	return n
}
