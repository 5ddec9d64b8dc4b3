package owner

import (
	"strings"
	"testing"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// TestPipeline: with every CPU taken, the next task of the same shape is
// queued behind a running task on its worker (scheduled, "queued
// behind"); it runs when that task ends, goes back at no retry's cost
// when the worker dies, and ends at once when it is cancelled.
func TestPipeline(t *testing.T) {
	// One CPU: a second task of one CPU waits for it, and is queued behind
	// the running one.
	f := newFixture(t, func(c *Config) { c.NumCPUs, c.Workers = 1, 1 })
	none := int32(0)

	// ahead starts a task that sleeps ten minutes (sleep is served in the
	// worker: no round trip) and a task queued behind it.
	ahead := func(t *testing.T, opts *rayhostv1.TaskOptions) (ids.TaskID, ids.ObjectID, ids.TaskID, ids.ObjectID) {
		t.Helper()
		a, arefs := f.submit(t, "sleep", opts, tenMinutes)
		f.waitState(t, a, stateRunning)
		b, brefs := f.submit(t, "add", nil, 1, 2)
		f.waitEvent(t, "the task queued behind", func(ev TaskEvent) bool {
			return ev.Task == b && ev.State == stateScheduled.String() && strings.Contains(ev.Message, "queued behind task "+a.String())
		})
		return a, arefs[0], b, brefs[0]
	}

	t.Run("runs when the task ahead ends", func(t *testing.T) {
		_, a, b, bref := ahead(t, nil)
		if err := f.api.Cancel(a, false, false); err != nil {
			t.Fatal(err)
		}
		var got int
		f.result(t, bref, &got)
		if got != 3 {
			t.Fatalf("add(1, 2) = %d", got)
		}
		want := "pending_args/0 pending_resources/0 scheduled/0 running/0 finished/0"
		if got := f.transitions(b); got != want {
			t.Fatalf("events:\n got %s\nwant %s", got, want)
		}
	})
	t.Run("its worker dies: placed again, no retry", func(t *testing.T) {
		a, aref, b, bref := ahead(t, &rayhostv1.TaskOptions{MaxRetries: &none})
		f.killWorker(t, a)
		if te := f.failure(t, aref); te.Kind != abi.ErrorWorkerDied {
			t.Fatalf("the task ahead: %+v, want worker_died", te)
		}
		var got int
		f.result(t, bref, &got)
		if got != 3 {
			t.Fatalf("add(1, 2) = %d", got)
		}
		want := "pending_args/0 pending_resources/0 scheduled/0 pending_args/0 pending_resources/0 scheduled/0 running/0 finished/0"
		if got := f.transitions(b); got != want {
			t.Fatalf("events:\n got %s\nwant %s", got, want)
		}
	})
	for _, force := range []bool{false, true} {
		name := "cancelled while queued"
		if force {
			name += ", with force"
		}
		t.Run(name, func(t *testing.T) {
			a, aref, b, bref := ahead(t, nil)
			if err := f.api.Cancel(bref, force, false); err != nil {
				t.Fatal(err)
			}
			if te := f.failure(t, bref); te.Kind != abi.ErrorCancelled {
				t.Fatalf("failure %+v, want cancelled", te)
			}
			if got := f.transitions(b); !strings.HasSuffix(got, "scheduled/0 cancelled/0") {
				t.Fatalf("events %s: not cancelled while queued", got)
			}
			// The task ahead was not touched: it still runs, and its
			// worker takes the next task once it ends.
			f.o.mu.Lock()
			state := f.o.tasks[a].lc.State
			f.o.mu.Unlock()
			if state != stateRunning {
				t.Fatalf("the task ahead is %s", state)
			}
			if err := f.api.Cancel(aref, false, false); err != nil {
				t.Fatal(err)
			}
			_ = f.value(t, aref)
			var got int
			f.call(t, "add", &got, 2, 3)
			if got != 5 {
				t.Fatalf("add(2, 3) = %d", got)
			}
		})
	}
	t.Run("the task ahead waits in Get: nothing waits behind it", func(t *testing.T) {
		// The parent waits for its child, which needs the one CPU: a task
		// queued behind the parent goes back, or was never queued.
		p, prefs := f.submit(t, "parent_of_sleeper", nil, 1)
		f.waitState(t, p, stateRunning)
		_, brefs := f.submit(t, "add", nil, 1, 2)
		var got int
		f.result(t, prefs[0], &got)
		f.result(t, brefs[0], &got)
		if got != 3 {
			t.Fatalf("add(1, 2) = %d", got)
		}
	})
}
