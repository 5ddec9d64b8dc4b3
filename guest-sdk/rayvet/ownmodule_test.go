package rayvet_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rayhost/rayhost/guest-sdk/rayvet"
)

// codeBlocks returns the fenced code blocks of markdown text.
func codeBlocks(text string) []string {
	var blocks []string
	var cur []string
	in := false
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "```") && !in:
			in, cur = true, nil
		case strings.HasPrefix(line, "```") && in:
			in = false
			blocks = append(blocks, strings.Join(cur, "\n")+"\n")
		case in:
			cur = append(cur, line)
		}
	}
	return blocks
}

// section returns the README section under heading, up to the next "## ".
func section(t *testing.T, readme, heading string) string {
	t.Helper()
	i := strings.Index(readme, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README has no %q section", heading)
	}
	s := readme[i+len(heading)+2:]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	return s
}

// TestOwnModule follows the README's "Your own module" section literally:
// a temporary module with the documented go.mod, the README's program in
// ./hello with the documented test, and the documented commands (go mod
// tidy, go test, the wasip1 build, and rayhost vet through Run). It needs
// the go command and the module proxy or a filled module cache.
func TestOwnModule(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	program := codeBlocks(section(t, readme, "## A remote function"))[0]
	var gomod, testFile, commands string
	for _, block := range codeBlocks(section(t, readme, "## Your own module")) {
		switch {
		case strings.HasPrefix(block, "module "):
			gomod = block
		case strings.HasPrefix(block, "// hello/square_test.go\n"):
			testFile = block
		case strings.Contains(block, "go mod tidy"):
			commands = block
		}
	}
	if gomod == "" || testFile == "" || commands == "" || !strings.Contains(gomod, "/path/to/rayhost") {
		t.Fatalf("the section lacks a go.mod, the test or the commands:\n%q\n%q\n%q", gomod, testFile, commands)
	}

	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", strings.ReplaceAll(gomod, "/path/to/rayhost", repo))
	write("hello/main.go", program)
	write("hello/square_test.go", testFile)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // a hang guard only
	defer cancel()
	ran := 0
	for _, line := range strings.Split(commands, "\n") {
		if i := strings.Index(line, " #"); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, "go "), strings.HasPrefix(line, "GOOS="):
			cmd := exec.CommandContext(ctx, "sh", "-c", line)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off", "GOTOOLCHAIN=local")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", line, err, out)
			}
			ran++
		case strings.HasPrefix(line, "rayhost vet "):
			var out bytes.Buffer
			n, err := rayvet.Run(ctx, dir, strings.Fields(line)[2:], &out)
			if err != nil || n != 0 {
				t.Fatalf("%s: %d findings, %v\n%s", line, n, err, out.String())
			}
			ran++
		default:
			t.Logf("not run here: %s", line) // installing and running the CLI
		}
	}
	if ran != 4 {
		t.Fatalf("ran %d of the section's commands, want 4 (go mod tidy, go test, go build, rayhost vet)", ran)
	}
	if fi, err := os.Stat(filepath.Join(dir, "hello.wasm")); err != nil || fi.Size() == 0 {
		t.Fatalf("no guest module was built: %v", err)
	}
}
