package rayvet_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/tools/go/analysis/analysistest"

	"github.com/rayhost/rayhost/guest-sdk/rayvet"
)

// gopath builds a GOPATH tree for analysistest: the test packages of
// testdata/src and the SDK's real sources (guest-sdk/ray and the internal
// packages it imports), copied from this checkout.
func gopath(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	copyDir(t, "testdata/src/a", filepath.Join(root, "src", "a"))
	copyDir(t, "testdata/src/b", filepath.Join(root, "src", "b"))
	// lib is imported by its module path, which a GOPATH tree reproduces.
	copyDir(t, "testdata/src/lib", filepath.Join(root, "src", "github.com/rayhost/rayhost/guest-sdk/rayvet/testdata/src/lib"))
	for _, pkg := range []string{"guest-sdk/ray", "internal/abi", "internal/ids", "internal/kinds"} {
		copyDir(t, filepath.Join("..", "..", pkg), filepath.Join(root, "src", "github.com/rayhost/rayhost", pkg))
	}
	// The SDK's dependencies, from the module cache (the go command knows
	// where).
	for _, mod := range []string{"github.com/fxamacker/cbor/v2", "github.com/x448/float16"} {
		dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", mod).Output()
		if err != nil {
			t.Fatalf("go list -m %s: %v", mod, err)
		}
		copyDir(t, strings.TrimSpace(string(dir)), filepath.Join(root, "src", mod))
	}
	return root
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAnalyzer: wrong types, wrong counts, ObjectRefs of the wrong type,
// generators, actors and methods are reported where testdata/src/a says
// ("// want"), and the correct calls are not. Package b calls functions
// registered in package lib: their signatures travel as facts (encoded and
// decoded, as between vet processes).
func TestAnalyzer(t *testing.T) {
	analysistest.Run(t, gopath(t), rayvet.Analyzer, "a", "b", "github.com/rayhost/rayhost/guest-sdk/rayvet/testdata/src/lib")
}

// TestRun loads the same packages as guests (GOOS=wasip1) from this module
// and prints one "file:line:col: message" line per finding.
func TestRun(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	src, err := os.ReadFile("testdata/src/a/a.go")
	if err != nil {
		t.Fatal(err)
	}
	srcB, err := os.ReadFile("testdata/src/b/b.go")
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Count(src, []byte("// want `")) + bytes.Count(srcB, []byte("// want `"))
	var out bytes.Buffer
	n, err := rayvet.Run(context.Background(), ".", []string{"./testdata/src/a", "./testdata/src/b"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if n != want || len(lines) != want {
		t.Fatalf("Run found %d (%d lines), want %d:\n%s", n, len(lines), want, out.String())
	}
	line := regexp.MustCompile(`^testdata/src/(a/a|b/b)\.go:\d+:\d+: Remote of "[^"]+" \(ray\.\w+\): .+$`)
	for _, l := range lines {
		if !line.MatchString(l) {
			t.Errorf("finding %q is not file:line:col: message", l)
		}
	}
	first := fmt.Sprintf("a.go:%d:13: ", 1+bytes.Count(src[:bytes.Index(src, []byte(`add.Remote("1", 2)`))], []byte("\n")))
	if !strings.Contains(out.String(), first+`Remote of "add" (ray.Func2): argument 1: string for a parameter of type int (want int or ray.ObjectRef[int])`) {
		t.Errorf("the first finding is not where and what it should be:\n%s", out.String())
	}

	// A clean package has no findings; a package that does not load is an error.
	if n, err := rayvet.Run(context.Background(), "..", []string{"./ray"}, &out); err != nil || n != 0 {
		t.Errorf("the SDK itself: %d findings, %v", n, err)
	}
	if _, err := rayvet.Run(context.Background(), ".", []string{"./testdata/nonexistent"}, &out); err == nil {
		t.Error("a missing package gave no error")
	}
}

// The project's own examples are correct guests: no findings (no false
// positives on real code).
func TestExamplesHaveNoFindings(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	var out bytes.Buffer
	n, err := rayvet.Run(context.Background(), "../..", []string{"./examples/..."}, &out)
	if err != nil || n != 0 {
		t.Errorf("examples: %d findings, %v\n%s", n, err, out.String())
	}
}
