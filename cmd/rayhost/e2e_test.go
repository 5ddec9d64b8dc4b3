package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/internal/testutil"
)

const guestPkg = "./host/testdata/guest"

func TestMain(m *testing.M) {
	os.Exit(testutil.Main(m, "./cmd/rayhost", guestPkg, "./examples/retrieve"))
}

// startProcess runs `rayhost start` and returns its API address once it
// says it listens.
func startProcess(t *testing.T, args ...string) string {
	t.Helper()
	args = append([]string{"start", "--listen", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--data-dir", t.TempDir(), "--log-level", "warn"}, args...)
	cmd := exec.Command(testutil.RayhostBinary(t), args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("rayhost start exited with %v after SIGTERM", err)
			}
		case <-time.After(testutil.HangGuard):
			_ = cmd.Process.Kill()
			t.Error("rayhost start did not exit after SIGTERM")
		}
	})
	lines := bufio.NewScanner(stdout)
	re := regexp.MustCompile(`listening on http://(\S+)`)
	for lines.Scan() {
		if m := re.FindStringSubmatch(lines.Text()); m != nil {
			go io.Copy(io.Discard, stdout)
			return m[1]
		}
	}
	t.Fatal("rayhost start did not print its address")
	return ""
}

// postJSON makes a Connect unary call the way curl would.
func postJSON(t *testing.T, addr, method, body string, out any) int {
	t.Helper()
	res, err := http.Post("http://"+addr+"/rayhost.v1.TaskService/"+method, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("%s: %s: %v", method, b, err)
	}
	return res.StatusCode
}

func TestEndToEnd(t *testing.T) {
	addr := startProcess(t, "--num-cpus", "2")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c := client.New(addr)
	mod, err := c.RegisterModule(ctx, testutil.Guest(t, guestPkg), "guest")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("go client, ObjectRef passed between tasks", func(t *testing.T) {
		first, err := c.Submit(ctx, "guest", "add", 20, 1)
		if err != nil {
			t.Fatal(err)
		}
		second, err := c.Submit(ctx, mod.Digest, "add", first, 21)
		if err != nil {
			t.Fatal(err)
		}
		var got int
		if err := c.Get(ctx, second, &got); err != nil || got != 42 {
			t.Fatalf("add(add(20, 1), 21) = %d, %v", got, err)
		}
	})

	t.Run("raw JSON over HTTP", func(t *testing.T) {
		type ref struct{ ID, Owner string }
		var sub struct{ Refs []ref }
		postJSON(t, addr, "Submit", `{"module":"guest","function":"add","args":[{"json":"2"},{"json":"3"}]}`, &sub)
		if len(sub.Refs) != 1 {
			t.Fatalf("Submit: %+v", sub)
		}
		body := fmt.Sprintf(`{"module":"guest","function":"add","args":[{"ref":{"id":%q}},{"json":"10"}]}`, sub.Refs[0].ID)
		var sub2 struct{ Refs []ref }
		postJSON(t, addr, "Submit", body, &sub2)
		var got struct{ Values []struct{ JSON string } }
		postJSON(t, addr, "Get", fmt.Sprintf(`{"refs":[{"id":%q}]}`, sub2.Refs[0].ID), &got)
		if len(got.Values) != 1 || got.Values[0].JSON != "15" {
			t.Fatalf("Get: %+v", got)
		}
		var e struct{ Code, Message string }
		if code := postJSON(t, addr, "Submit", `{"module":"guest","function":"nope"}`, &e); code != 404 || e.Code != "not_found" {
			t.Fatalf("unknown function over JSON: %d %+v", code, e)
		}
		if code := postJSON(t, addr, "Get", `{"refs":[{"id":"00112233445566778899aabbccddeeff00000001"}]}`, &e); code != 404 || e.Code != "not_found" {
			t.Fatalf("unknown object over JSON: %d %+v", code, e)
		}
	})

	t.Run("rayhost submit", func(t *testing.T) {
		out, err := exec.Command(testutil.RayhostBinary(t), "submit", "--address", addr, "guest", "add", "4", "5").Output()
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(out)) != "9" {
			t.Fatalf("rayhost submit printed %q", out)
		}
	})

	t.Run("rayhost tasks and timeline", func(t *testing.T) {
		out, err := exec.Command(testutil.RayhostBinary(t), "tasks", "--address", addr, "--state", "finished").Output()
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`(?m)^[0-9a-f]{32} +add +finished +\S+ +1 `).Match(out) {
			t.Fatalf("rayhost tasks printed:\n%s", out)
		}
		out, err = exec.Command(testutil.RayhostBinary(t), "timeline", "--address", addr).Output()
		if err != nil {
			t.Fatal(err)
		}
		var trace []struct{ Ph, Name string }
		if err := json.Unmarshal(out, &trace); err != nil || len(trace) == 0 {
			t.Fatalf("rayhost timeline is not a Chrome trace: %v\n%s", err, out)
		}
		complete := 0
		for _, e := range trace {
			if e.Ph == "X" {
				complete++
			}
		}
		if complete < 4 { // the adds above
			t.Fatalf("%d complete events in:\n%s", complete, out)
		}
	})

	t.Run("rayhost run --address", func(t *testing.T) {
		wasm := testutil.Guest(t, "./examples/retrieve")
		file := t.TempDir() + "/retrieve.wasm"
		if err := os.WriteFile(file, wasm, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(testutil.RayhostBinary(t), "run", "--address", addr, file).CombinedOutput()
		if err != nil {
			t.Fatalf("rayhost run: %v\n%s", err, out)
		}
		if !bytes.Contains(out, []byte("wait total: runtime")) || !bytes.Contains(out, []byte("{7 Learning}")) {
			t.Fatalf("rayhost run printed:\n%s", out)
		}
	})
}
