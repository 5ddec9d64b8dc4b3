// Package build builds what tests run: the rayhost binary (for worker
// processes) and Go guests (wasip1 reactors), each once per test process,
// and names the wazero compilation cache all tests share. It imports
// nothing of rayhost, so that any package's internal tests can use it
// (package testutil, which starts whole hosts, re-exports it).
//
// A TestMain builds up front, so that no test's time includes a build, and
// removes what it built at the end:
//
//	func TestMain(m *testing.M) { os.Exit(build.Main(m, "./host/testdata/guest")) }
package build

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildMu  sync.Mutex
	built    = map[string]string{} // package and target -> output path
	buildDir string
)

// RepoRoot is the module's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
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

// goBuild builds pkg (relative to the repo root) natively, or as a wasip1
// reactor when wasm is set, once per process, and returns the output path.
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

// Main is a TestMain that builds pkgs up front (Prebuild), runs the tests,
// and removes what it built (72 MB a test process otherwise left in the
// temporary directory); it returns the exit code for os.Exit.
func Main(m *testing.M, pkgs ...string) int {
	if err := Prebuild(pkgs...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer Cleanup()
	return m.Run()
}

// Cleanup removes what this process built.
func Cleanup() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
		buildDir, built = "", map[string]string{}
	}
}

// HangGuard bounds a test's wait for something that must happen
// eventually. It is generous on purpose: a loaded machine is slow, and a
// test only asserts that the thing happens, never how fast; the guard
// just stops a hang.
const HangGuard = 2 * time.Minute

// CacheDir is the wazero compilation cache all test hosts share, so a guest
// is compiled once per machine rather than once per test.
func CacheDir() string { return filepath.Join(os.TempDir(), "rayhost-test-wazero-cache") }
