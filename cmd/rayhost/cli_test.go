package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/internal/testutil"
)

// runCLI runs the command line in process and returns its exit code and
// output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = execute(args, &out, &errb)
	return code, out.String(), errb.String()
}

// rayhost runs the real binary in dir ("" for the repository root) and
// returns its exit code and combined output.
func rayhost(t *testing.T, dir string, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute) // a hang guard
	defer cancel()
	cmd := exec.CommandContext(ctx, testutil.RayhostBinary(t), args...)
	cmd.Dir = dir
	if dir == "" {
		cmd.Dir = testutil.RepoRoot()
	}
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("rayhost %v: %v\n%s", args, err, out)
	return 0, ""
}

func TestCLIHelp(t *testing.T) {
	root := newRootCmd(nil, nil)
	var names []string
	for _, c := range root.Commands() {
		if !c.Hidden && c.Name() != "help" {
			names = append(names, c.Name())
		}
	}
	if len(names) < 12 {
		t.Fatalf("commands: %v", names)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := runCLI(t, name, "--help")
			if code != 0 {
				t.Fatalf("rayhost %s --help exited %d: %s", name, code, errOut)
			}
			if name == "completion" {
				return // cobra's own
			}
			if !strings.Contains(out, "Usage:") || !strings.Contains(out, "Examples:") {
				t.Fatalf("rayhost %s --help has no usage or examples:\n%s", name, out)
			}
			// A paragraph of description comes before the usage.
			if desc, _, _ := strings.Cut(out, "Usage:"); len(strings.Fields(desc)) < 12 {
				t.Fatalf("rayhost %s --help: description %q is too short", name, desc)
			}
		})
	}
	t.Run("root", func(t *testing.T) {
		for _, args := range [][]string{{"--help"}, {"help"}, {"-h"}} {
			code, out, _ := runCLI(t, args...)
			if code != 0 || !strings.Contains(out, "Running programs:") {
				t.Fatalf("rayhost %v exited %d:\n%s", args, code, out)
			}
			if regexp.MustCompile(`(?m)^\s+worker\s`).MatchString(out) {
				t.Fatalf("the internal worker command is listed:\n%s", out)
			}
		}
	})
	t.Run("usage mistakes exit 2", func(t *testing.T) {
		for _, args := range [][]string{
			{"nosuchcommand"},
			{"tasks", "--no-such-flag"},
			{"run"},
			{"run", "a.wasm", "b.wasm"},
			{"submit", "only-a-module"},
			{"start", "stray"},
			{"join"},
			{"task"},
			{"health", "--address", "http://h:6380/path"},
			{"tasks", "--address", "h:99999"},
			{"submit", "guest", "add", "not json"},
			{"start", "--gossip-timings", "slow", "--data-dir", t.TempDir()},
			{"task", "xyz"},
		} {
			code, _, errOut := runCLI(t, args...)
			if code != 2 || !strings.HasPrefix(errOut, "rayhost: ") {
				t.Errorf("rayhost %q exited %d, want 2, stderr:\n%s", args, code, errOut)
			}
		}
	})
}

func TestCLIVersionAndCompletion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != 0 || !strings.Contains(out, "github.com/rayhost/rayhost") || !strings.Contains(out, "go1.") {
		t.Fatalf("version exited %d:\n%s", code, out)
	}
	code, out, _ = runCLI(t, "version", "--json")
	var v versionInfo
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || v.Module == "" || v.Go == "" || v.Platform == "" {
		t.Fatalf("version --json exited %d, %v: %s", code, err, out)
	}
	// A binary built in a git checkout knows its revision.
	bin := filepath.Join(t.TempDir(), "rayhost")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./cmd/rayhost")
	build.Dir = testutil.RepoRoot()
	build.Env = append(os.Environ(), "GOFLAGS=")
	if fi, err := os.Stat(filepath.Join(testutil.RepoRoot(), ".git")); err != nil || !fi.IsDir() {
		t.Logf("not a plain git checkout (%v): the go command records no revision to check", err)
	} else if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true: %v\n%s", err, b)
	} else {
		out, err := exec.Command(bin, "version", "--json").Output()
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatal(err)
		}
		if err != nil || !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(v.Revision) {
			t.Fatalf("version of a VCS build: %+v, %v", v, err)
		}
	}
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		code, out, errOut := runCLI(t, "completion", shell)
		if code != 0 || !strings.Contains(out, "rayhost") || len(out) < 500 {
			t.Fatalf("completion %s exited %d (%s):\n%.300s", shell, code, errOut, out)
		}
	}
	// The completion script completes commands and flags.
	code, out, _ = runCLI(t, "__complete", "ta")
	if code != 0 || !strings.Contains(out, "tasks") || !strings.Contains(out, "task\t") {
		t.Fatalf("completing 'ta': %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "__complete", "tasks", "--st")
	if code != 0 || !strings.Contains(out, "--state") {
		t.Fatalf("completing 'tasks --st': %d\n%s", code, out)
	}
}

func TestNormalizeAddress(t *testing.T) {
	for _, tc := range []struct {
		in   string
		tls  bool
		want string
	}{
		{"localhost", false, "http://localhost:6380"},
		{"localhost:7000", false, "http://localhost:7000"},
		{"10.0.0.1", false, "http://10.0.0.1:6380"},
		{"10.0.0.1", true, "https://10.0.0.1:6380"},
		{":7000", false, "http://127.0.0.1:7000"},
		{"http://h", false, "http://h:6380"},
		{"https://h", false, "https://h:6380"},
		{"https://h:443/", false, "https://h:443"},
		{"http://h:7000", false, "http://h:7000"},
		{"::1", false, "http://[::1]:6380"},
		{"[::1]", false, "http://[::1]:6380"},
		{"[::1]:7000", false, "http://[::1]:7000"},
	} {
		got, err := normalizeAddress(tc.in, tc.tls)
		if err != nil || got != tc.want {
			t.Errorf("normalizeAddress(%q, %v) = %q, %v; want %q", tc.in, tc.tls, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "h:0", "h:x", "ftp://h", "http://h/p", "http://u@h", "[::1", "a:b:c"} {
		if got, err := normalizeAddress(bad, false); err == nil || !isUsageError(err) {
			t.Errorf("normalizeAddress(%q) = %q, %v; want a usage error", bad, got, err)
		}
	}
}

// TestCLIAgainstHost runs the commands that talk to a host against a real
// `rayhost start` process.
func TestCLIAgainstHost(t *testing.T) {
	addr := startProcess(t, "--num-cpus", "2")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	c := client.New(addr)
	if _, err := c.RegisterModule(ctx, testutil.Guest(t, guestPkg), "guest"); err != nil {
		t.Fatal(err)
	}
	wasm := filepath.Join(t.TempDir(), "retrieve.wasm")
	if err := os.WriteFile(wasm, testutil.Guest(t, "./examples/retrieve"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("flags before and after positionals", func(t *testing.T) {
		for _, args := range [][]string{
			{"submit", "--address", addr, "guest", "add", "4", "5"},
			{"submit", "guest", "add", "4", "5", "--address", addr},
			{"submit", "guest", "--address", addr, "add", "4", "5"},
			{"submit", "-a", addr, "guest", "add", "4", "5", "--timeout", "1m"},
		} {
			code, out := rayhost(t, "", nil, args...)
			if code != 0 || !strings.HasPrefix(out, "9\n") {
				t.Fatalf("rayhost %q exited %d:\n%s", args, code, out)
			}
		}
		for _, args := range [][]string{
			{"run", "--address", addr, wasm},
			{"run", wasm, "--address", addr, "--progress", "never"},
		} {
			code, out := rayhost(t, "", nil, args...)
			if code != 0 || !strings.Contains(out, "wait total: runtime") {
				t.Fatalf("rayhost %q exited %d:\n%s", args, code, out)
			}
		}
		for _, args := range [][]string{
			{"tasks", "--address", addr, "--state", "finished"},
			{"tasks", "--state", "finished", "--address", addr},
			{"actors", "--address", addr},
			{"status", "--address", addr},
			{"health", "--address", addr},
			{"timeline", "--address", addr},
		} {
			if code, out := rayhost(t, "", nil, args...); code != 0 {
				t.Fatalf("rayhost %q exited %d:\n%s", args, code, out)
			}
		}
	})

	t.Run("address forms and environment", func(t *testing.T) {
		_, port, _ := strings.Cut(addr, ":")
		for _, a := range []string{addr, "http://" + addr, "localhost:" + port} {
			if code, out := rayhost(t, "", nil, "health", "--address", a); code != 0 {
				t.Fatalf("health --address %s exited %d:\n%s", a, code, out)
			}
		}
		if code, out := rayhost(t, "", []string{"RAYHOST_ADDRESS=" + addr}, "health"); code != 0 {
			t.Fatalf("health with RAYHOST_ADDRESS exited %d:\n%s", code, out)
		}
		// A flag wins over the environment.
		if code, out := rayhost(t, "", []string{"RAYHOST_ADDRESS=127.0.0.1:1"}, "health", "--address", addr); code != 0 {
			t.Fatalf("--address over RAYHOST_ADDRESS exited %d:\n%s", code, out)
		}
	})

	t.Run("json listings decode", func(t *testing.T) {
		var tasks []taskRow
		decodeOut(t, &tasks, "tasks", "--address", addr, "--json")
		if len(tasks) == 0 || tasks[0].TaskID == "" || tasks[0].Attempts != 1 {
			t.Fatalf("tasks --json: %+v", tasks)
		}
		var actors []client.Actor
		decodeOut(t, &actors, "actors", "--address", addr, "--json")
		var members []client.Member
		decodeOut(t, &members, "status", "--address", addr, "--json")
		if len(members) != 1 || !members[0].Self {
			t.Fatalf("status --json: %+v", members)
		}
		var h client.Health
		decodeOut(t, &h, "health", "--address", addr, "--json")
		if h.HostID == "" || h.TotalCPUs != 2 || len(h.WorkerConfinement) == 0 {
			t.Fatalf("health --json: %+v", h)
		}
		// The table lists every confinement layer, in force or not.
		code, out := rayhost(t, "", nil, "health", "--address", addr)
		for _, l := range h.WorkerConfinement {
			if code != 0 || !regexp.MustCompile(`(?m)^`+l.Name+` +(yes|NO) `).MatchString(out) {
				t.Fatalf("health does not list layer %s:\n%s", l.Name, out)
			}
		}
	})

	t.Run("a failed task reads well", func(t *testing.T) {
		code, out := rayhost(t, "", nil, "submit", "--address", addr, "guest", "panic", `"kaboom"`)
		if code != 1 || !strings.Contains(out, "attempt 1") || !strings.Contains(out, "kaboom") ||
			!strings.Contains(out, "guest stack:") || !strings.Contains(out, "goroutine") {
			t.Fatalf("a panicking call: exit %d:\n%s", code, out)
		}
		id := regexp.MustCompile(`rayhost task ([0-9a-f]{32})`).FindStringSubmatch(out)
		if id == nil {
			t.Fatalf("no task ID in:\n%s", out)
		}
		code, out = rayhost(t, "", nil, "tasks", "--address", addr, "--state", "failed")
		if code != 0 || !regexp.MustCompile(`(?m)^TASK ID .* REASON$`).MatchString(out) ||
			!regexp.MustCompile(`(?m)^`+id[1]+` +panic +failed +\S+ +1 +\S+ +.*kaboom`).MatchString(out) {
			t.Fatalf("tasks --state failed:\n%s", out)
		}
		code, out = rayhost(t, "", nil, "task", id[1][:10], "--address", addr)
		if code != 0 || !strings.Contains(out, "function  panic") || !regexp.MustCompile(`(?m)^1 +\S+ +\d+ .* failed `).MatchString(out) ||
			!strings.Contains(out, "guest stack:") || !strings.Contains(out, "kaboom") {
			t.Fatalf("task %s:\n%s", id[1], out)
		}
		var d taskDetail
		decodeOut(t, &d, "task", "--address", addr, "--json", id[1])
		if d.Error == nil || d.Error.Kind != "panic" || d.Error.Stack == "" || d.Error.Attempt != 1 || len(d.Attempts) != 1 {
			t.Fatalf("task --json: %+v", d)
		}
	})

	t.Run("retries are numbered from 1 everywhere", func(t *testing.T) {
		one := int32(1)
		refs, err := c.SubmitCall(ctx, client.Call{Module: "guest", Function: "fail", Args: []any{"no luck"}, MaxRetries: &one, RetryAllExceptions: true})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.GetValues(ctx, refs)
		var te interface{ Error() string }
		if !errors.As(err, &te) || !strings.Contains(err.Error(), "(attempt 2)") {
			t.Fatalf("a task that died twice: %v", err)
		}
		id := refs[0].ID[:32]
		var d taskDetail
		decodeOut(t, &d, "task", "--address", addr, "--json", id)
		if len(d.Attempts) != 2 || d.Attempts[0].Attempt != 1 || d.Attempts[0].Outcome != "retried" ||
			d.Attempts[1].Attempt != 2 || d.Attempts[1].Outcome != "failed" || d.Error == nil || d.Error.Attempt != 2 {
			t.Fatalf("task --json of a retried task: %+v", d)
		}
		code, out := rayhost(t, "", nil, "tasks", "--address", addr, "--state", "failed")
		if code != 0 || !regexp.MustCompile(`(?m)^`+id+` +fail +failed +\S+ +2 .*no luck`).MatchString(out) {
			t.Fatalf("tasks:\n%s", out)
		}
	})

	t.Run("errors name the fix", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			code int
			want string
		}{
			{[]string{"run", "examples/basic"}, 2, "rayhost run ./examples/basic"},
			{[]string{"submit", "--address", addr, "./internal/ids", "f"}, 1, "is not package main"},
			{[]string{"run", "./no/such/dir"}, 1, "no Go package ./no/such/dir"},
			{[]string{"run", "--address", "127.0.0.1:1", wasm}, 1, "no rayhost host answers at http://127.0.0.1:1: start one with `rayhost start`"},
			{[]string{"tasks", "--address", "127.0.0.1:1"}, 1, "no rayhost host answers"},
			{[]string{"submit", "--address", addr, "guest", "nope"}, 1, "nope"},
			{[]string{"task", "--address", addr, "00000000000000000000000000000000"}, 1, "no task 00000000000000000000000000000000"},
			{[]string{"run", "--address", addr, "./cmd/rayhost/testdata/notguest"}, 1, "is not a rayhost guest"},
		} {
			code, out := rayhost(t, "", nil, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.want) || !strings.Contains("\n"+out, "\nrayhost: ") {
				t.Errorf("rayhost %q exited %d, want %d and %q:\n%s", tc.args, code, tc.code, tc.want, out)
			}
		}
	})
}

// decodeOut runs the binary and decodes its standard output as JSON.
func decodeOut(t *testing.T, v any, args ...string) {
	t.Helper()
	cmd := exec.Command(testutil.RayhostBinary(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("rayhost %q: %v\n%s", args, err, stderr.String())
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("rayhost %q printed no JSON: %v\n%s", args, err, out)
	}
}

// TestCLIHostWentAway kills the host under a running driver: the user reads
// what happened, not a protocol error.
func TestCLIHostWentAway(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(testutil.RayhostBinary(t), "start", "--listen", "127.0.0.1:0", "--data-dir", dir, "--log-level", "error",
		"--gossip", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := readAddr(t, stdout)
	go io.Copy(io.Discard, stdout)
	wasm := filepath.Join(t.TempDir(), "retrieve.wasm")
	if err := os.WriteFile(wasm, testutil.Guest(t, "./examples/retrieve"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := exec.Command(testutil.RayhostBinary(t), "run", "--address", addr, wasm)
	run.Dir = testutil.RepoRoot()
	pipe, err := run.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	run.Stderr = run.Stdout
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill the host once the driver runs: its first output says so.
	var out strings.Builder
	lines := bufio.NewScanner(pipe)
	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
		if strings.HasPrefix(lines.Text(), "sequential") {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
	}
	err = run.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(out.String(), "went away during the call") {
		t.Fatalf("rayhost run when its host died: %v\n%s", err, out.String())
	}
}

// readAddr reads `rayhost start`'s output until it says where it listens.
func readAddr(t *testing.T, r io.Reader) string {
	t.Helper()
	lines := bufio.NewScanner(r)
	re := regexp.MustCompile(`listening on http://(\S+)`)
	for lines.Scan() {
		if m := re.FindStringSubmatch(lines.Text()); m != nil {
			return m[1]
		}
	}
	t.Fatal("rayhost start did not print its address")
	return ""
}

// TestCLIGrants: a driver holds only what `rayhost run --mount --env`
// grants it, and may pass that (or less) to its tasks.
func TestCLIGrants(t *testing.T) {
	allowed := t.TempDir()
	if err := os.WriteFile(filepath.Join(allowed, "hello.txt"), []byte("hi from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := startProcess(t, "--num-cpus", "2", "--allow-dir", allowed)
	wasm := filepath.Join(t.TempDir(), "attacker.wasm")
	if err := os.WriteFile(wasm, testutil.Guest(t, "./host/testdata/attacker"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := rayhost(t, "", nil, "run", wasm, "--address", addr, "--mount", allowed+":/d:ro", "--env", "GRANTED_DIR="+allowed)
	if code != 0 || !strings.Contains(out, "child read: hi from the host") {
		t.Fatalf("a driver granted the directory: exit %d:\n%s", code, out)
	}
	// Without the grant its task is refused.
	code, out = rayhost(t, "", nil, "run", wasm, "--address", addr, "--env", "GRANTED_DIR="+allowed)
	if code != 1 || !strings.Contains(out, "permission_denied") {
		t.Fatalf("a driver without the grant: exit %d:\n%s", code, out)
	}
	// Nor can the driver be granted what the host does not allow.
	code, out = rayhost(t, "", nil, "run", wasm, "--address", addr, "--mount", "/etc:/d:ro", "--env", "GRANTED_DIR=/etc")
	if code != 1 || !strings.Contains(out, "permission denied") {
		t.Fatalf("a driver granted /etc: exit %d:\n%s", code, out)
	}
	for _, bad := range [][]string{{"--mount", "justone"}, {"--mount", "a:b:rx"}, {"--env", "NOEQUALS"}} {
		if code, out := rayhost(t, "", nil, append([]string{"run", wasm, "--address", addr}, bad...)...); code != 2 {
			t.Fatalf("run %q: exit %d, want 2:\n%s", bad, code, out)
		}
	}
}

// TestCLIVet: a Remote argument of the wrong type is reported before run
// time, by vet and by run (which vets first).
func TestCLIVet(t *testing.T) {
	const pkg = "./cmd/rayhost/testdata/badcall"
	code, out := rayhost(t, "", nil, "vet", pkg)
	if code != 1 || !regexp.MustCompile(`badcall/main.go:16:\d+: .*string.*int`).MatchString(out) {
		t.Fatalf("rayhost vet %s: exit %d:\n%s", pkg, code, out)
	}
	code, out = rayhost(t, "", nil, "run", pkg)
	if code != 1 || !strings.Contains(out, "1 call(s) of Remote") || strings.Contains(out, "building") {
		t.Fatalf("rayhost run %s: exit %d:\n%s", pkg, code, out)
	}
	// Skipping vet, the mistake is found only when the task runs.
	code, out = rayhost(t, "", nil, "run", "--vet=false", pkg)
	if code != 1 || !strings.Contains(out, "bad argument: string for a parameter of type int") {
		t.Fatalf("rayhost run --vet=false %s: exit %d:\n%s", pkg, code, out)
	}
	if code, out := rayhost(t, "", nil, "vet", "./examples/..."); code != 0 {
		t.Fatalf("rayhost vet ./examples/...: exit %d:\n%s", code, out)
	}
}

// TestCLIJoinFlagsAfterAddress: `rayhost join ADDR --data-dir D --listen L`
// joins ADDR with those flags (Go's flag package took them for seeds).
func TestCLIJoinFlagsAfterAddress(t *testing.T) {
	hosts := testutil.StartProcCluster(t, 2, testutil.ProcOptions{}) // the joiner: join SEED --id host-b --data-dir …
	b := hosts[1]
	members := testutil.WaitMembers(t, hosts[0].Client, 2)
	ids := []string{members[0].HostID, members[1].HostID}
	if !slices.Contains(ids, "host-b") {
		t.Fatalf("members %v: the joiner's --id after its seed address was not used", ids)
	}
	if entries, err := os.ReadDir(b.DataDir); err != nil || len(entries) == 0 {
		t.Fatalf("the joiner's --data-dir %s after its seed address is empty: %v", b.DataDir, err)
	}
	if !strings.HasPrefix(b.Addr, b.IP+":") {
		t.Fatalf("the joiner listens on %s, not on its --listen %s:0", b.Addr, b.IP)
	}
}
