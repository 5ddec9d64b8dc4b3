package host_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/guest-sdk/ray"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/testutil"
)

const guestPkg = "./host/testdata/guest"

func TestMain(m *testing.M) {
	// Build the worker binary and the test guest once, before any test.
	os.Exit(testutil.Main(m, "./cmd/rayhost", guestPkg, hostilePkg))
}

// setup starts a host with real worker processes and registers the guest.
func setup(t *testing.T, mutate func(*host.Config)) (*host.Host, *client.Client, string) {
	t.Helper()
	h := testutil.StartHost(t, mutate)
	c := client.New(h.Addr())
	return h, c, testutil.Register(t, c, guestPkg)
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// mustCall submits fn(args) and decodes its result into out.
func mustCall(t *testing.T, c *client.Client, mod, fn string, out any, args ...any) {
	t.Helper()
	ctx := ctxFor(t, testutil.HangGuard)
	ref, err := c.Submit(ctx, mod, fn, args...)
	if err != nil {
		t.Fatalf("submit %s: %v", fn, err)
	}
	if err := c.Get(ctx, ref, out); err != nil {
		t.Fatalf("get %s: %v", fn, err)
	}
}

// stillServes checks the host runs a normal task after something bad.
func stillServes(t *testing.T, c *client.Client, mod string) {
	t.Helper()
	var sum int
	mustCall(t, c, mod, "add", &sum, 1, 2)
	if sum != 3 {
		t.Fatalf("add(1, 2) = %d after the failure", sum)
	}
}

func TestTasks(t *testing.T) {
	_, c, mod := setup(t, nil)
	ctx := ctxFor(t, testutil.HangGuard)

	t.Run("value in, value out", func(t *testing.T) {
		var got int
		mustCall(t, c, mod, "add", &got, 2, 40)
		if got != 42 {
			t.Fatalf("add = %d", got)
		}
	})
	t.Run("bytes travel raw", func(t *testing.T) {
		in := []byte{0, 1, 2, 255, 'x'}
		var got []byte
		mustCall(t, c, mod, "echo_bytes", &got, in)
		if !bytes.Equal(got, in) {
			t.Fatalf("echo_bytes = %v", got)
		}
	})
	t.Run("a large value reaches a guest's Get", func(t *testing.T) {
		// 3 MiB: past ipc.BodyBytes, so the reply's bytes follow as a
		// body once the guest has memory for them.
		const n = 3<<20 + 5
		var want int64
		for i := range n {
			want += int64(byte(i * 7))
		}
		var got []int64
		mustCall(t, c, mod, "get_big_sum", &got, n)
		if len(got) != 4 || got[0] != n || got[1] != want || got[2] != n || got[3] != want {
			t.Fatalf("get_big_sum = %v, want [%d %d %d %d]", got, n, want, n, want)
		}
	})
	t.Run("ObjectRef argument arrives as its value", func(t *testing.T) {
		first, err := c.Submit(ctx, mod, "add", 1, 2)
		if err != nil {
			t.Fatal(err)
		}
		second, err := c.Submit(ctx, mod, "add", first, first) // one ref, two slots
		if err != nil {
			t.Fatal(err)
		}
		var got int
		if err := c.Get(ctx, second, &got); err != nil || got != 6 {
			t.Fatalf("add(ref, ref) = %d, %v", got, err)
		}
	})
	t.Run("put object as argument", func(t *testing.T) {
		ref, err := c.Put(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		var got int
		mustCall(t, c, mod, "add", &got, ref, 1)
		if got != 101 {
			t.Fatalf("add(put, 1) = %d", got)
		}
	})
	t.Run("nested tasks", func(t *testing.T) {
		var got int
		mustCall(t, c, mod, "nested_sum", &got, 10)
		if got != 90 {
			t.Fatalf("nested_sum(10) = %d", got)
		}
	})
	t.Run("refs nested in a value are gettable", func(t *testing.T) {
		a, _ := c.Put(ctx, 5)
		b, _ := c.Put(ctx, 7)
		var got int
		mustCall(t, c, mod, "get_nested", &got, []client.ObjectRef{a, b})
		if got != 12 {
			t.Fatalf("get_nested = %d", got)
		}
	})
	t.Run("large object streams in chunks", func(t *testing.T) {
		const n = 5<<20 + 3
		ref, err := c.Submit(ctx, mod, "make_bytes", n)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		codec, err := c.GetStream(ctx, ref, &buf)
		if err != nil || codec != "raw" || buf.Len() != n {
			t.Fatalf("GetStream: codec %q, %d bytes, %v", codec, buf.Len(), err)
		}
		if b := buf.Bytes(); b[n-1] != byte((n-1)*7%256) {
			t.Fatalf("last byte %d", b[n-1])
		}
		var got []byte
		if err := c.Get(ctx, ref, &got); err != nil || !bytes.Equal(got, buf.Bytes()) {
			t.Fatalf("Get of the large object: %d bytes, %v", len(got), err)
		}
	})
	t.Run("wait keeps input order", func(t *testing.T) {
		slow, _ := c.Submit(ctx, mod, "sleep", tenMinutes)
		defer func() { _ = c.Cancel(ctx, slow, true, true) }()
		fast, _ := c.Submit(ctx, mod, "add", 1, 1)
		ready, notReady, err := c.Wait(ctx, []client.ObjectRef{slow, fast}, 1, -1)
		if err != nil || len(ready) != 1 || ready[0] != fast || len(notReady) != 1 || notReady[0] != slow {
			t.Fatalf("Wait = %v, %v, %v", ready, notReady, err)
		}
		if _, _, err := c.Wait(ctx, []client.ObjectRef{fast, fast}, 1, 0); !errors.Is(err, client.ErrInvalidArgument) {
			t.Fatalf("Wait with a duplicate ref: %v", err)
		}
	})
}

// TestBadInput: each bad input gets a clear error, and the host then runs a
// normal task.
func TestBadInput(t *testing.T) {
	_, c, mod := setup(t, nil)
	tests := []struct {
		name    string
		do      func(ctx context.Context) error
		want    error  // errors.Is target
		message string // expected in the error text
	}{
		{"bytes that are not wasm", func(ctx context.Context) error {
			_, err := c.RegisterModule(ctx, []byte("#!/bin/sh\necho hi\n"), "")
			return err
		}, client.ErrInvalidArgument, "not a WebAssembly binary"},
		{"wasm without the ABI", func(ctx context.Context) error {
			_, err := c.RegisterModule(ctx, []byte("\x00asm\x01\x00\x00\x00"), "")
			return err
		}, client.ErrInvalidArgument, "does not export rayhost_abi_version"},
		{"unknown module", func(ctx context.Context) error {
			_, err := c.Submit(ctx, "no-such-module", "add", 1, 2)
			return err
		}, client.ErrNotFound, "module not found"},
		{"unknown function", func(ctx context.Context) error {
			_, err := c.Submit(ctx, mod, "no_such_function")
			return err
		}, client.ErrNotFound, "function not found"},
		{"wrong number of arguments", func(ctx context.Context) error {
			_, err := c.Submit(ctx, mod, "add", 1)
			return err
		}, client.ErrInvalidArgument, "takes 2 arguments"},
		{"arguments that do not decode", func(ctx context.Context) error {
			ref, err := c.Submit(ctx, mod, "add", "one", 2)
			if err != nil {
				return err
			}
			var out int
			return c.Get(ctx, ref, &out)
		}, client.ErrInvalidArgument, "argument 1"},
		{"get of an unknown ObjectRef", func(ctx context.Context) error {
			var out int
			return c.Get(ctx, client.ObjectRef{ID: "00112233445566778899aabbccddeeff00000001"}, &out)
		}, client.ErrNotFound, "object not found"},
		{"malformed ObjectRef", func(ctx context.Context) error {
			var out int
			return c.Get(ctx, client.ObjectRef{ID: "zz"}, &out)
		}, client.ErrInvalidArgument, "invalid id"},
		{"guest panic", func(ctx context.Context) error {
			ref, _ := c.Submit(ctx, mod, "panic", "the guest gave up")
			var out int
			return c.Get(ctx, ref, &out)
		}, client.ErrTaskFailed, "the guest gave up"},
		{"guest error", func(ctx context.Context) error {
			ref, _ := c.Submit(ctx, mod, "fail", "no luck")
			var out int
			return c.Get(ctx, ref, &out)
		}, client.ErrTaskFailed, "no luck"},
		{"guest exits", func(ctx context.Context) error {
			ref, _ := c.Submit(ctx, mod, "exit", 3)
			var out int
			return c.Get(ctx, ref, &out)
		}, client.ErrWorkerDied, "exited with code 3"}, // a crash in Ray's terms: retried, then worker_died
		{"get timeout", func(ctx context.Context) error {
			ref, _ := c.Submit(ctx, mod, "sleep", 3000)
			short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			var out int
			return c.Get(short, ref, &out)
		}, client.ErrGetTimeout, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do(ctxFor(t, testutil.HangGuard))
			if !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			if !bytes.Contains([]byte(err.Error()), []byte(tt.message)) {
				t.Fatalf("error %q does not say %q", err, tt.message)
			}
			stillServes(t, c, mod)
		})
	}
}

// TestWorkerKilled: a worker killed with SIGKILL mid-task fails that task
// with a clear error; a new worker takes its place.
func TestWorkerKilled(t *testing.T) {
	_, c, mod := setup(t, func(cfg *host.Config) { cfg.NumCPUs, cfg.Workers = 1, 1 })
	ctx := ctxFor(t, testutil.HangGuard)
	none := int32(0)
	refs, err := c.SubmitCall(ctx, client.Call{Module: mod, Function: "sleep", Args: []any{tenMinutes}, MaxRetries: &none})
	if err != nil {
		t.Fatal(err)
	}
	ref := refs[0]
	// The worker that runs it is named by its running event.
	if err := testutil.KillPID(runningWorker(t, c, ref)); err != nil {
		t.Fatal(err)
	}
	var out int
	err = c.Get(ctx, ref, &out)
	if !errors.Is(err, client.ErrWorkerDied) || !bytes.Contains([]byte(err.Error()), []byte("died while running")) {
		t.Fatalf("Get after SIGKILL = %v", err)
	}
	stillServes(t, c, mod)
}

// TestHealthNotDelayedBySpinningGuest: a guest in a CPU loop runs in its
// own process, so the host's RPCs (and GC) do not wait for it: health
// answers, again and again, while the guest still spins (it would spin ten
// minutes). The latencies are logged, not bounded: a loaded machine may
// be slow, but not stuck behind the guest.
func TestHealthNotDelayedBySpinningGuest(t *testing.T) {
	_, c, mod := setup(t, nil)
	ctx := ctxFor(t, 2*testutil.HangGuard)
	ref, err := c.Submit(ctx, mod, "spin", tenMinutes)
	if err != nil {
		t.Fatal(err)
	}
	runningWorker(t, c, ref)
	var worst time.Duration
	for range 20 {
		start := time.Now()
		hctx, cancel := context.WithTimeout(ctx, testutil.HangGuard)
		h, err := c.Health(hctx)
		cancel()
		if err != nil {
			t.Fatalf("health while a guest spins: %v", err)
		}
		if h.TotalCPUs-h.AvailableCPUs < 1 {
			t.Fatalf("health shows no busy CPU while a guest spins: %+v", h)
		}
		worst = max(worst, time.Since(start))
	}
	t.Logf("worst health latency while a guest spun: %v", worst)
	if _, notReady, err := c.Wait(ctx, []client.ObjectRef{ref}, 1, 0); err != nil || len(notReady) != 1 {
		t.Fatalf("the spinning task ended before the health calls did: %v, %v", notReady, err)
	}
	if err := c.Cancel(ctx, ref, true, true); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := c.Get(ctx, ref, &n); !errors.Is(err, ray.ErrTaskCancelled) {
		t.Fatalf("Get after a forced cancel = %v", err)
	}
	stillServes(t, c, mod)
}

func TestObjectsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := testutil.HostConfig(t)
	cfg.DataDir = dir
	h1, err := host.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(h1.Addr())
	ctx := ctxFor(t, testutil.HangGuard)
	small, err := c.Put(ctx, map[string]int{"answer": 42})
	if err != nil {
		t.Fatal(err)
	}
	large, err := c.Put(ctx, bytes.Repeat([]byte("ray"), 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if err := h1.Close(); err != nil {
		t.Fatal(err)
	}
	h2, err := host.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	c = client.New(h2.Addr())
	var m map[string]int
	if err := c.Get(ctx, small, &m); err != nil || m["answer"] != 42 {
		t.Fatalf("small object after restart: %v, %v", m, err)
	}
	var b []byte
	if err := c.Get(ctx, large, &b); err != nil || len(b) != 3<<20 {
		t.Fatalf("large object after restart: %d bytes, %v", len(b), err)
	}
}

func TestRunStreamsGuestOutput(t *testing.T) {
	_, c, mod := setup(t, nil)
	ctx := ctxFor(t, testutil.HangGuard)
	var out bytes.Buffer
	err := c.Run(ctx, mod, func(l client.LogLine) {
		fmt.Fprintf(&out, "%s:%s", l.Function, l.Data)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"main:driver starting\n", "main:driver got 42\n",
		"unhandled error in a task whose result was never fetched: task fail", "nobody looks at this"} {
		if !bytes.Contains(out.Bytes(), []byte(want)) {
			t.Errorf("output %q lacks %q", out.String(), want)
		}
	}
	// The driver's own task is listed, as Ray lists a DRIVER_TASK.
	evs, _, err := c.ListTasks(ctx, "finished")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(evs, func(ev client.TaskEvent) bool { return ev.Function == "main" }) {
		t.Errorf("the driver's task is not listed: %+v", evs)
	}
}
