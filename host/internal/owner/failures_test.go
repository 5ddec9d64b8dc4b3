package owner

import (
	"strings"
	"testing"
	"time"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// TestWorkerDeath: a task whose worker dies is retried (a system failure),
// and fails with worker_died when it has no retries left; the host goes on
// with a new worker.
func TestWorkerDeath(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.NumCPUs, c.Workers = 1, 1 })

	t.Run("retried", func(t *testing.T) {
		// Its first attempt would sleep ten minutes: only the kill ends it.
		id, refs := f.submit(t, "hang_once", nil, 1500)
		f.waitState(t, id, stateRunning)
		f.killWorker(t, id)
		var got int
		f.result(t, refs[0], &got)
		if got != 1500 {
			t.Fatalf("hang_once = %d after its worker died", got)
		}
		want := "pending_args/0 pending_resources/0 scheduled/0 running/0 retried/0 pending_resources/1 scheduled/1 running/1 finished/1"
		if got := f.transitions(id); got != want {
			t.Fatalf("events:\n got %s\nwant %s", got, want)
		}
	})
	t.Run("no retries left", func(t *testing.T) {
		none := int32(0)
		id, refs := f.submit(t, "sleep", &rayhostv1.TaskOptions{MaxRetries: &none}, tenMinutes)
		f.waitState(t, id, stateRunning)
		f.killWorker(t, id)
		te := f.failure(t, refs[0])
		if te.Kind != abi.ErrorWorkerDied || !strings.Contains(te.Message, "died while running") {
			t.Fatalf("failure %+v, want worker_died", te)
		}
	})
	t.Run("the host still serves", func(t *testing.T) {
		var got int
		f.call(t, "add", &got, 1, 2)
		if got != 3 {
			t.Fatalf("add(1, 2) = %d", got)
		}
	})
}

// TestCancel: a cancelled task, pending or running, fails with cancelled;
// a recursive cancel reaches the task's children.
func TestCancel(t *testing.T) {
	// One CPU: a second task waits for resources while the first runs.
	f := newFixture(t, func(c *Config) { c.NumCPUs, c.Workers = 1, 1 })
	tests := []struct {
		name string
		// setup returns the task to cancel, and what to cancel after.
		setup func(t *testing.T) (victim ids.ObjectID, cleanup ids.ObjectID)
		force bool
		state taskState // the victim's state when it is cancelled
	}{
		{"waiting for an argument", func(t *testing.T) (ids.ObjectID, ids.ObjectID) {
			_, arg := f.submit(t, "sleep", nil, tenMinutes)
			id, refs := f.submit(t, "add", nil, ref{arg[0]}, 1)
			f.waitState(t, id, statePendingArgs)
			return refs[0], arg[0]
		}, false, statePendingArgs},
		{"waiting for resources", func(t *testing.T) (ids.ObjectID, ids.ObjectID) {
			blocker, brefs := f.submit(t, "sleep", nil, tenMinutes)
			f.waitState(t, blocker, stateRunning)
			// Half a CPU: another shape than the blocker's, so it is not
			// queued behind it on its worker (TestPipeline).
			half := 0.5
			id, refs := f.submit(t, "add", &rayhostv1.TaskOptions{Resources: &rayhostv1.Resources{NumCpus: &half}}, 1, 2)
			f.waitState(t, id, statePendingResources)
			return refs[0], brefs[0]
		}, false, statePendingResources},
		{"sleeping in the guest", func(t *testing.T) (ids.ObjectID, ids.ObjectID) {
			id, refs := f.submit(t, "sleep", nil, tenMinutes)
			f.waitState(t, id, stateRunning)
			return refs[0], ids.ObjectID{}
		}, false, stateRunning},
		{"sleeping in the guest, with force", func(t *testing.T) (ids.ObjectID, ids.ObjectID) {
			id, refs := f.submit(t, "sleep", nil, tenMinutes)
			f.waitState(t, id, stateRunning)
			return refs[0], ids.ObjectID{}
		}, true, stateRunning},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			victim, cleanup := tt.setup(t)
			if err := f.api.Cancel(victim, tt.force, true); err != nil {
				t.Fatal(err)
			}
			if te := f.failure(t, victim); te.Kind != abi.ErrorCancelled {
				t.Fatalf("failure %+v, want cancelled", te)
			}
			evs := f.transitions(victim.Task())
			if !strings.HasSuffix(evs, tt.state.String()+"/0 cancelled/0") {
				t.Fatalf("events %s: not cancelled from %s", evs, tt.state)
			}
			if !cleanup.IsZero() {
				if err := f.api.Cancel(cleanup, false, true); err != nil {
					t.Fatal(err)
				}
				_ = f.value(t, cleanup)
			}
		})
	}
	t.Run("a task blocked in Get, recursively", func(t *testing.T) {
		parent, refs := f.submit(t, "parent_of_sleeper", nil, tenMinutes)
		child := f.waitEvent(t, "the child runs", func(ev TaskEvent) bool {
			return ev.Parent == parent && ev.Function == "sleeper" && ev.State == "running"
		})
		if err := f.api.Cancel(refs[0], false, true); err != nil {
			t.Fatal(err)
		}
		if te := f.failure(t, refs[0]); te.Kind != abi.ErrorCancelled {
			t.Fatalf("parent's failure %+v, want cancelled", te)
		}
		f.waitState(t, child.Task, stateCancelled)
	})
	t.Run("the host still serves", func(t *testing.T) {
		var got int
		f.call(t, "add", &got, 1, 2)
		if got != 3 {
			t.Fatalf("add(1, 2) = %d", got)
		}
	})
}

// TestTimeout: an attempt that runs past its timeout is stopped and fails
// with timeout, and is retried if its retries allow. The Fake clock decides
// when the timeout passes: the test waits for the attempt's timer to be
// armed (the attempt runs), then advances past it.
func TestTimeout(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.NumCPUs, c.Workers = 1, 1 })
	const limit = 5 * time.Second

	t.Run("fails", func(t *testing.T) {
		armed := f.clk.Added()
		none := int32(0)
		id, refs := f.submit(t, "sleep", &rayhostv1.TaskOptions{TimeoutMs: limit.Milliseconds(), MaxRetries: &none}, tenMinutes)
		waitFor(t, armed, "the attempt's timer")
		f.clk.Advance(limit - time.Millisecond)
		if n := f.clk.Pending(); n != 1 {
			t.Fatalf("%d timers pending just before the timeout, want the attempt's", n)
		}
		f.clk.Advance(time.Millisecond)
		te := f.failure(t, refs[0])
		if te.Kind != abi.ErrorTimeout || !strings.Contains(te.Message, "ran past its timeout of 5s") {
			t.Fatalf("failure %+v, want timeout", te)
		}
		if got, want := f.transitions(id), "running/0 failed/0"; !strings.HasSuffix(got, want) {
			t.Fatalf("events %s, want them to end %s", got, want)
		}
	})
	t.Run("retried", func(t *testing.T) {
		// hang_once sleeps ten minutes on its first attempt only.
		armed := f.clk.Added()
		id, refs := f.submit(t, "hang_once", &rayhostv1.TaskOptions{TimeoutMs: limit.Milliseconds(), RetryExceptions: []string{"timeout"}}, 7)
		waitFor(t, armed, "the first attempt's timer")
		f.clk.Advance(limit)
		var got int
		f.result(t, refs[0], &got)
		if got != 7 {
			t.Fatalf("hang_once = %d after a timeout", got)
		}
		want := "running/0 retried/0 pending_resources/1 scheduled/1 running/1 finished/1"
		if got := f.transitions(id); !strings.HasSuffix(got, want) {
			t.Fatalf("events %s, want them to end %s", got, want)
		}
		if ev := f.waitState(t, id, stateRetried); !strings.Contains(ev.Message, "timeout") {
			t.Fatalf("retried event %+v does not say timeout", ev)
		}
	})
	t.Run("a finished attempt's timer is stopped", func(t *testing.T) {
		_, refs := f.submit(t, "add", &rayhostv1.TaskOptions{TimeoutMs: limit.Milliseconds()}, 1, 2)
		var got int
		f.result(t, refs[0], &got)
		if n := f.clk.Pending(); n != 0 {
			t.Fatalf("%d timers pending after the task finished", n)
		}
	})
}
