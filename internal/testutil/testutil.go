// Package testutil starts real rayhost hosts for tests: it builds the
// rayhost binary (for worker processes) and Go guests once per test process,
// shares one wazero compilation cache between all tests, and cleans up with
// t.Cleanup.
package testutil

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/host"
)

var (
	buildMu  sync.Mutex
	built    = map[string]string{} // package -> output path
	buildDir string
)

// RepoRoot is the module's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func outDir() (string, error) {
	if buildDir == "" {
		d, err := os.MkdirTemp("", "rayhost-test-build-")
		if err != nil {
			return "", err
		}
		buildDir = d
	}
	return buildDir, nil
}

func goBuild(pkg string, wasm bool) (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	key := fmt.Sprintf("%s/%v", pkg, wasm)
	if p, ok := built[key]; ok {
		return p, nil
	}
	dir, err := outDir()
	if err != nil {
		return "", err
	}
	name := strings.NewReplacer("/", "_", ".", "_").Replace(pkg)
	out := filepath.Join(dir, name)
	args := []string{"build", "-o", out}
	env := os.Environ()
	if wasm {
		out += ".wasm"
		args = []string{"build", "-buildmode=c-shared", "-o", out}
		env = append(env, "GOOS=wasip1", "GOARCH=wasm")
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = RepoRoot()
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, stderr.String())
	}
	built[key] = out
	return out, nil
}

// RayhostBinary builds ./cmd/rayhost once and returns its path.
func RayhostBinary(t testing.TB) string {
	t.Helper()
	p, err := goBuild("./cmd/rayhost", false)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Guest builds the Go package pkg (relative to the repo root, e.g.
// "./examples/retrieve") as a wasip1 reactor once and returns its bytes.
func Guest(t testing.TB, pkg string) []byte {
	t.Helper()
	p, err := goBuild(pkg, true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// HangGuard bounds a test's wait for something that must happen
// eventually. It is generous on purpose: a loaded machine is slow, and a
// test only asserts that the thing happens, never how fast; the guard
// just stops a hang.
const HangGuard = 2 * time.Minute

// CacheDir is the wazero compilation cache all test hosts share, so a guest
// is compiled once per machine rather than once per test.
func CacheDir() string { return filepath.Join(os.TempDir(), "rayhost-test-wazero-cache") }

// HostConfig returns a config for a test host: a fresh data dir, a free
// port on loopback, worker processes from the rayhost binary, the shared
// compilation cache and logs at warn level into the test log.
func HostConfig(t testing.TB) host.Config {
	t.Helper()
	cfg := host.DefaultConfig(t.TempDir())
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.CacheDir = CacheDir()
	cfg.WorkerCommand = []string{RayhostBinary(t), "worker"}
	cfg.NumCPUs = 2
	cfg.Workers = 2
	cfg.ID = "test-" + strings.ReplaceAll(t.Name(), "/", "-")
	cfg.Logger = slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelWarn}))
	return cfg
}

// StartHost starts a host with HostConfig, changed by mutate (may be nil),
// and closes it when the test ends.
func StartHost(t testing.TB, mutate func(*host.Config)) *host.Host {
	t.Helper()
	cfg := HostConfig(t)
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := host.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("closing the host: %v", err)
		}
	})
	return h
}

// Register registers the guest package pkg on c and returns its digest.
func Register(t testing.TB, c *client.Client, pkg string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), HangGuard)
	defer cancel()
	mod, err := c.RegisterModule(ctx, Guest(t, pkg), "")
	if err != nil {
		t.Fatalf("registering %s: %v", pkg, err)
	}
	return mod.Digest
}

// testWriter sends log output to t.Log, so it shows only for failing
// tests. It goes quiet once the test has ended (t.Log would panic then),
// for a goroutine of the host that logs late on a slow machine.
type testWriter struct {
	t       testing.TB
	mu      sync.Mutex
	stopped bool
}

// newTestWriter returns a testWriter for t. Its cleanup is registered
// before the caller's (such as a host's Close), so it runs after them.
func newTestWriter(t testing.TB) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.stopped = true
		w.mu.Unlock()
	})
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// Prebuild builds the rayhost binary and guest packages up front, for a
// TestMain: packages starting with "./cmd/" are built natively, the others
// as wasip1 reactors.
func Prebuild(pkgs ...string) error {
	for _, p := range pkgs {
		if _, err := goBuild(p, !strings.HasPrefix(p, "./cmd/")); err != nil {
			return err
		}
	}
	return nil
}
