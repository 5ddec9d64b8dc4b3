package launch_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rayhost/rayhost/host/internal/launch"
	"github.com/rayhost/rayhost/internal/confine"
	"github.com/rayhost/rayhost/internal/ipc"
)

// hangGuard bounds waits for what must happen; never a speed check.
const hangGuard = time.Minute

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), hangGuard)
	t.Cleanup(cancel)
	return ctx
}

// waitFor fails the test if p does not exit within the hang guard.
func waitFor(t *testing.T, p launch.Process) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(hangGuard):
		t.Fatal("the worker did not exit")
		return nil
	}
}

// TestInProcessLauncher: an in-process worker says Ready (with no
// confinement report) over its connection, has no PID, and ends when
// killed, twice harmlessly.
func TestInProcessLauncher(t *testing.T) {
	p, err := launch.InProcessLauncher{}.Launch(ctxFor(t), launch.WorkerOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	conn := ipc.NewConn(p.Conn())
	typ, payload, err := conn.Read(nil)
	if err != nil || typ != ipc.TypeReady {
		t.Fatalf("first frame: %v, %v; want Ready", typ, err)
	}
	var c launch.Confinement
	if missing, changed, err := c.Note(payload); err != nil || changed || missing != "" || len(c.Layers()) != 0 {
		t.Fatalf("an in-process worker's Ready %q: %q, %v, %v; want no report", payload, missing, changed, err)
	}
	if p.PID() != 0 {
		t.Fatalf("PID %d in-process", p.PID())
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p)
}

func TestConfinementNote(t *testing.T) {
	var c launch.Confinement
	for _, step := range []struct {
		name    string
		ready   string
		missing string
		changed bool
		err     error
		layers  int
	}{
		{"all in force", `123` + "\n" + `[{"name":"seccomp","active":true,"detail":"on"}]`, "", false, nil, 1},
		{"one missing", `124` + "\n" + `[{"name":"seccomp","active":true,"detail":"on"},{"name":"landlock","active":false,"detail":"no ABI"}]`, "landlock: no ABI", true, nil, 2},
		{"the same again", `125` + "\n" + `[{"name":"seccomp","active":true,"detail":"on"},{"name":"landlock","active":false,"detail":"no ABI"}]`, "landlock: no ABI", false, nil, 2},
		{"garbage", "126\n{not json", "", false, launch.ErrBadReport, 2},
		{"in force again", "127\n[]", "", true, nil, 0},
	} {
		missing, changed, err := c.Note([]byte(step.ready))
		if missing != step.missing || changed != step.changed || !errors.Is(err, step.err) || (step.err == nil && err != nil) {
			t.Fatalf("%s: %q, %v, %v; want %q, %v, %v", step.name, missing, changed, err, step.missing, step.changed, step.err)
		}
		if n := len(c.Layers()); n != step.layers {
			t.Fatalf("%s: %d layers kept, want %d", step.name, n, step.layers)
		}
	}
	// Layers is a copy.
	var c2 launch.Confinement
	_, _, _ = c2.Note([]byte("1\n" + `[{"name":"a","active":true,"detail":"x"}]`))
	l := c2.Layers()
	l[0] = confine.Layer{Name: "changed"}
	if c2.Layers()[0].Name != "a" {
		t.Fatal("Layers shares its slice")
	}
}

func TestProcessLauncherRefuses(t *testing.T) {
	if _, err := (&launch.ProcessLauncher{}).Launch(ctxFor(t), launch.WorkerOptions{}); launch.Supported() == nil && !errors.Is(err, launch.ErrNoCommand) {
		t.Fatalf("no command: %v, want ErrNoCommand", err)
	}
	_, err := (&launch.ProcessLauncher{Command: []string{"/nonexistent/rayhost", "worker"}}).Launch(ctxFor(t), launch.WorkerOptions{Confine: true})
	if err == nil || (launch.Supported() == nil && !strings.Contains(err.Error(), "/nonexistent/rayhost")) {
		t.Fatalf("a missing binary: %v", err)
	}
}

// TestConfinementHammer: notes and reads from many goroutines (-race).
func TestConfinementHammer(t *testing.T) {
	var c launch.Confinement
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				_, _, _ = c.Note([]byte(fmt.Sprintf("%d\n[{\"name\":\"l%d\",\"active\":false,\"detail\":\"x\"}]", i, i)))
				if len(c.Layers()) != 1 {
					t.Error("a report of one layer kept as another count")
					return
				}
			}
		})
	}
	wg.Wait()
}

// Killing an in-process worker ends it for the caller at once, as a
// process kill would: Wait returns ErrKilled.
func TestInProcessKill(t *testing.T) {
	// The worker's goroutine outlives Kill and may still write its cache:
	// not a t.TempDir, whose cleanup would race it.
	cache, err := os.MkdirTemp("", "rayhost-inprocess-kill-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(cache) })
	p, err := launch.InProcessLauncher{}.Launch(context.Background(), launch.WorkerOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = p.Kill() // twice is fine
	if err := p.Wait(); !errors.Is(err, launch.ErrKilled) {
		t.Fatalf("Wait after Kill = %v, want ErrKilled", err)
	}
}
