package host_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/guest-sdk/ray"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/testutil"
)

// runningWorker waits for the running event of ref's task and returns the
// pid of the worker process it names.
func runningWorker(t *testing.T, c *client.Client, ref client.ObjectRef) int {
	t.Helper()
	pid := 0
	eventually(t, testutil.HangGuard, func() bool {
		evs, _, err := c.ListTasks(t.Context(), "running")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if strings.HasPrefix(ref.ID, e.TaskID) && e.WorkerPID != 0 {
				pid = e.WorkerPID
			}
		}
		return pid != 0
	}, "the task never ran")
	return pid
}

// waitRunning waits until the host runs n tasks holding CPUs.
func waitRunning(t *testing.T, c *client.Client, busyCPUs float64) {
	t.Helper()
	ctx := ctxFor(t, testutil.HangGuard)
	for {
		h, err := c.Health(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if h.TotalCPUs-h.AvailableCPUs >= busyCPUs {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("never %v CPUs busy", busyCPUs)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestRetries(t *testing.T) {
	_, c, mod := setup(t, func(cfg *host.Config) { cfg.NumCPUs, cfg.Workers = 1, 1 })
	ctx := ctxFor(t, testutil.HangGuard)

	t.Run("worker death is retried", func(t *testing.T) {
		// Its first attempt would run ten minutes: only the kill ends it.
		ref, err := c.Submit(ctx, mod, "hang_once", 1500)
		if err != nil {
			t.Fatal(err)
		}
		if err := testutil.KillPID(runningWorker(t, c, ref)); err != nil {
			t.Fatal(err)
		}
		var got int
		if err := c.Get(ctx, ref, &got); err != nil || got != 1500 {
			t.Fatalf("Get after a retried worker death = %d, %v", got, err)
		}
		evs, _, err := c.ListTasks(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		var states []string
		for _, e := range evs {
			if e.Function == "hang_once" {
				states = append(states, e.State+"/"+string(rune('0'+e.Attempt-1)))
			}
		}
		want := "pending_args/0 pending_resources/0 scheduled/0 running/0 retried/0 pending_resources/1 scheduled/1 running/1 finished/1"
		if got := strings.Join(states, " "); got != want {
			t.Fatalf("events:\n got %s\nwant %s", got, want)
		}
	})
	tests := []struct {
		name    string
		call    client.Call
		want    int // attempt that succeeded; -1: fails
		wantErr string
	}{
		{"application errors are not retried by default", client.Call{Function: "flaky"}, -1, "first attempt fails"},
		{"RetryExceptions retries every application error", client.Call{Function: "flaky", RetryAllExceptions: true}, 1, ""},
		{"RetryExceptions by code", client.Call{Function: "flaky", RetryExceptions: []string{"transient"}}, 1, ""},
		{"RetryExceptions by another code", client.Call{Function: "flaky", RetryExceptions: []string{"other"}}, -1, "first attempt fails"},
		{"MaxRetries 0 wins", client.Call{Function: "flaky", RetryAllExceptions: true, MaxRetries: new(int32)}, -1, "first attempt fails"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.call.Module = mod
			refs, err := c.SubmitCall(ctx, tt.call)
			if err != nil {
				t.Fatal(err)
			}
			var got int
			err = c.Get(ctx, refs[0], &got)
			if tt.want < 0 {
				var te *ray.TaskError
				if !errors.As(err, &te) || te.Message != tt.wantErr || te.Code != "transient" || te.Attempt != 1 {
					t.Fatalf("Get = %v (%+v), want the first attempt's error", err, te)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Get = %d, %v; want attempt %d", got, err, tt.want)
			}
		})
	}
}

// TestCancelCases: every kind of cancel makes Get return ErrTaskCancelled
// (long before the task would have ended: each sleeps or spins for 10
// minutes), and the host keeps serving. How long it took is logged.
func TestCancelCases(t *testing.T) {
	_, c, mod := setup(t, func(cfg *host.Config) { cfg.NumCPUs, cfg.Workers = 1, 1 })
	ctx := ctxFor(t, 2*testutil.HangGuard)
	tests := []struct {
		name  string
		setup func(t *testing.T) (victim client.ObjectRef, cleanup func())
		force bool
	}{
		{"queued task", func(t *testing.T) (client.ObjectRef, func()) {
			blocker, _ := c.Submit(ctx, mod, "sleep", tenMinutes)
			waitRunning(t, c, 1)
			queued, _ := c.Submit(ctx, mod, "add", 1, 2)
			return queued, func() { _ = c.Cancel(ctx, blocker, true, true) }
		}, false},
		{"task waiting on an unfinished argument", func(t *testing.T) (client.ObjectRef, func()) {
			arg, _ := c.Submit(ctx, mod, "sleep", tenMinutes)
			waiting, _ := c.Submit(ctx, mod, "add", arg, 1)
			return waiting, func() { _ = c.Cancel(ctx, arg, true, true) }
		}, false},
		{"task sleeping in the guest", func(t *testing.T) (client.ObjectRef, func()) {
			ref, _ := c.Submit(ctx, mod, "sleep", tenMinutes)
			runningWorker(t, c, ref)
			return ref, func() {}
		}, false},
		{"CPU-looping task with force", func(t *testing.T) (client.ObjectRef, func()) {
			ref, _ := c.Submit(ctx, mod, "spin", tenMinutes)
			runningWorker(t, c, ref)
			return ref, func() {}
		}, true},
		{"task blocked in Get, recursively", func(t *testing.T) (client.ObjectRef, func()) {
			ref, _ := c.Submit(ctx, mod, "parent_of_sleeper", tenMinutes)
			eventually(t, testutil.HangGuard, func() bool { // its child runs
				evs, _, _ := c.ListTasks(ctx, "running")
				for _, e := range evs {
					if e.Function == "sleeper" {
						return true
					}
				}
				return false
			}, "the child never ran")
			return ref, func() {}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			victim, cleanup := tt.setup(t)
			defer cleanup()
			start := time.Now()
			if err := c.Cancel(ctx, victim, tt.force, true); err != nil {
				t.Fatal(err)
			}
			var out int
			get, cancel := context.WithTimeout(ctx, testutil.HangGuard)
			defer cancel()
			err := c.Get(get, victim, &out)
			if !errors.Is(err, ray.ErrTaskCancelled) {
				t.Fatalf("Get after cancel = %v", err)
			}
			t.Logf("cancelled in %v", time.Since(start))
		})
	}
	t.Run("children cancelled too", func(t *testing.T) {
		eventually(t, testutil.HangGuard, func() bool {
			evs, _, err := c.ListTasks(ctx, "cancelled")
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				if e.Function == "sleeper" {
					return true
				}
			}
			return false
		}, "the child of parent_of_sleeper was not cancelled")
	})
	stillServes(t, c, mod)
}

func TestGenerators(t *testing.T) {
	_, c, mod := setup(t, nil)
	tests := []struct {
		name, fn string
		check    func(t *testing.T, raw json.RawMessage)
	}{
		{"first item arrives before the generator ends", "streams_early", func(t *testing.T, raw json.RawMessage) {
			if string(raw) != "true" {
				t.Fatalf("the second item already existed when the first arrived")
			}
		}},
		{"an error surfaces at its place in the stream", "collect_broken", func(t *testing.T, raw json.RawMessage) {
			var seen []string
			_ = json.Unmarshal(raw, &seen)
			if len(seen) != 4 || seen[0] != "a" || seen[1] != "b" || !strings.Contains(seen[2], "broken at item 2") || seen[3] != "end" {
				t.Fatalf("consumer saw %q", seen)
			}
		}},
		{"a guest's Get past its deadline is ErrGetTimeout", "get_times_out", func(t *testing.T, raw json.RawMessage) {
			if string(raw) != "true" {
				t.Fatal("ray.Get past the deadline did not return ErrGetTimeout")
			}
		}},
		{"backpressure pauses the producer", "backpressure_lag", func(t *testing.T, raw json.RawMessage) {
			var lags []int64
			_ = json.Unmarshal(raw, &lags)
			if len(lags) != 4 {
				t.Fatalf("lags %v", lags)
			}
			for k, lag := range lags {
				if lag < 0 {
					t.Fatalf("item %d was made %v before item %d was asked for: %v", k+2, time.Duration(-lag), k, lags)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var raw json.RawMessage
			mustCall(t, c, mod, tt.fn, &raw)
			tt.check(t, raw)
		})
	}
}

func TestOptionsAndResources(t *testing.T) {
	_, c, mod := setup(t, func(cfg *host.Config) { cfg.Resources = map[string]float64{"disk": 1} })
	ctx := ctxFor(t, testutil.HangGuard)

	t.Run("multiple returns", func(t *testing.T) {
		refs, err := c.SubmitCall(ctx, client.Call{Module: mod, Function: "three"})
		if err != nil || len(refs) != 3 {
			t.Fatalf("three: %d refs, %v", len(refs), err)
		}
		var a int
		var b string
		var cc []int
		if c.Get(ctx, refs[1], &b) != nil || c.Get(ctx, refs[0], &a) != nil || c.Get(ctx, refs[2], &cc) != nil || a != 1 || b != "two" || cc[0] != 3 {
			t.Fatalf("three = %v %q %v", a, b, cc)
		}
	})
	t.Run("infeasible fails, not queued forever", func(t *testing.T) {
		ref, _ := c.Submit(ctx, mod, "uses_gpu", 1)
		var out int
		err := c.Get(ctx, ref, &out)
		var te *ray.TaskError
		if !errors.As(err, &te) || te.Kind != "infeasible" {
			t.Fatalf("Get = %v", err)
		}
	})
	t.Run("custom resource serialises its tasks", func(t *testing.T) {
		a, _ := c.Submit(ctx, mod, "disk_task", 300)
		b, _ := c.Submit(ctx, mod, "disk_task", 300)
		var sa, sb int64
		if c.Get(ctx, a, &sa) != nil || c.Get(ctx, b, &sb) != nil {
			t.Fatal("disk tasks failed")
		}
		if d := time.Duration(max(sa, sb) - min(sa, sb)); d < 300*time.Millisecond {
			t.Fatalf("two tasks needing the only disk ran %v apart", d)
		}
	})
	t.Run("get of many returns the first error at once", func(t *testing.T) {
		// The slow task sleeps ten minutes, past the test's context: the
		// error can only come from the failed one, while the slow one runs.
		slow, _ := c.Submit(ctx, mod, "sleep", tenMinutes)
		bad, _ := c.Submit(ctx, mod, "fail", "fast failure")
		start := time.Now()
		_, err := c.GetValues(ctx, []client.ObjectRef{slow, bad})
		if !errors.Is(err, client.ErrTaskFailed) {
			t.Fatalf("GetValues = %v after %v", err, time.Since(start))
		}
		t.Logf("GetValues failed after %v", time.Since(start))
		if _, notReady, err := c.Wait(ctx, []client.ObjectRef{slow}, 1, 0); err != nil || len(notReady) != 1 {
			t.Fatalf("the slow task is done already: %v, %v", notReady, err)
		}
		_ = c.Cancel(ctx, slow, true, true)
	})
	t.Run("a failed argument fails its dependents with the cause", func(t *testing.T) {
		bad, _ := c.Submit(ctx, mod, "fail", "root cause")
		dep, _ := c.Submit(ctx, mod, "add", bad, 1)
		var out int
		err := c.Get(ctx, dep, &out)
		var te *ray.TaskError
		if !errors.As(err, &te) || te.Kind != "dependency" || te.Cause == nil || te.Cause.Message != "root cause" {
			t.Fatalf("Get = %v", err)
		}
	})
	t.Run("events can be turned off", func(t *testing.T) {
		refs, _ := c.SubmitCall(ctx, client.Call{Module: mod, Function: "add", Args: []any{40, 2}, DisableEvents: true})
		var out int
		if err := c.Get(ctx, refs[0], &out); err != nil {
			t.Fatal(err)
		}
		evs, _, _ := c.ListTasks(ctx, "")
		for _, e := range evs {
			if strings.HasPrefix(refs[0].ID, e.TaskID) {
				t.Fatalf("event recorded for a task with events off: %+v", e)
			}
		}
	})
}

func TestTimeline(t *testing.T) {
	_, c, mod := setup(t, nil)
	ctx := ctxFor(t, testutil.HangGuard)
	var refs []client.ObjectRef
	for i := range 5 {
		r, _ := c.Submit(ctx, mod, "add", i, i)
		refs = append(refs, r)
	}
	if _, err := c.GetValues(ctx, refs); err != nil {
		t.Fatal(err)
	}
	evs, _, err := c.ListTasks(ctx, "finished")
	if err != nil {
		t.Fatal(err)
	}
	b, err := client.ChromeTrace(evs)
	if err != nil {
		t.Fatal(err)
	}
	var trace []map[string]any
	if err := json.Unmarshal(b, &trace); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	complete := 0
	for _, e := range trace {
		if e["ph"] == "X" {
			complete++
			args := e["args"].(map[string]any)
			if e["name"] != "add" || e["dur"].(float64) <= 0 || args["task_id"] == "" {
				t.Fatalf("bad event %v", e)
			}
		}
	}
	if complete != 5 {
		t.Fatalf("%d complete events for 5 tasks:\n%s", complete, b)
	}
}

// tenMinutes is how long the tasks a test cancels would run: far past any
// hang guard, so an outcome can only come from the cancel.
const tenMinutes = 600_000

// eventually retries cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
