package owner

import (
	"fmt"
	"strings"
	"testing"
	"time"

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

// TestPipelineDepth: behind a task of a function known to be short, more
// tasks are queued, up to what is known to be short ahead of them; a
// task of a function not seen yet is queued, but nothing behind it; and a
// worker that goes idle takes back the tasks queued behind a long one
// elsewhere (no head-of-line blocking).
func TestPipelineDepth(t *testing.T) {
	queuedBehind := func(f *fixture, t *testing.T, id, ahead ids.TaskID) {
		t.Helper()
		f.waitEvent(t, "queued behind "+ahead.String(), func(ev TaskEvent) bool {
			return ev.Task == id && ev.State == stateScheduled.String() && strings.Contains(ev.Message, "queued behind task "+ahead.String())
		})
	}
	// learn runs sleep and add once: their run times are known (the
	// fixture's clock stands still: known, and short).
	learn := func(f *fixture, t *testing.T) {
		var got int
		f.call(t, "sleep", &got, 0)
		f.call(t, "add", &got, 1, 1)
	}
	// startLong makes a host of cpus CPUs whose sleep and add are known,
	// and starts a ten-minute sleep on it.
	startLong := func(t *testing.T, cpus float64) (*fixture, ids.TaskID, ids.ObjectID) {
		f := newFixture(t, func(c *Config) { c.NumCPUs, c.Workers = cpus, int(cpus) })
		dumpPipelineOnFailure(t, f)
		learn(f, t)
		a, arefs := f.submit(t, "sleep", nil, tenMinutes)
		f.waitState(t, a, stateRunning)
		return f, a, arefs[0]
	}
	// sums checks that refs[i] holds add(i, k).
	sums := func(f *fixture, t *testing.T, refs []ids.ObjectID, k int) {
		t.Helper()
		for i, ref := range refs {
			var got int
			f.result(t, ref, &got)
			if got != i+k {
				t.Fatalf("add(%d, %d) = %d", i, k, got)
			}
		}
	}

	t.Run("several deep behind known short work, nothing behind an unknown", func(t *testing.T) {
		f, a, aref := startLong(t, 1)
		var behind []ids.ObjectID
		for i := range 3 {
			b, brefs := f.submit(t, "add", nil, i, 10)
			queuedBehind(f, t, b, a)
			behind = append(behind, brefs[0])
		}
		u, urefs := f.submit(t, "echo_bytes", nil, []byte("x")) // never ran here
		queuedBehind(f, t, u, a)
		last, lrefs := f.submit(t, "add", nil, 100, 10)
		f.o.mu.Lock()
		lt := f.o.tasks[last]
		queued, state := lt.queuedLocked(), lt.lc.State
		f.o.mu.Unlock()
		if queued || state == stateRunning {
			t.Fatalf("a task behind a function not seen yet was queued (%s)", state)
		}
		if err := f.api.Cancel(aref, false, false); err != nil {
			t.Fatal(err)
		}
		sums(f, t, behind, 10)
		if v := f.value(t, urefs[0]); v.Codec == abi.CodecError {
			t.Fatalf("echo_bytes failed: %+v", abi.DecodeTaskError(v.Data))
		}
		var got int
		f.result(t, lrefs[0], &got)
		if got != 110 {
			t.Fatalf("add(100, 10) = %d", got)
		}
		for _, b := range []ids.ObjectID{behind[0], behind[2]} {
			if tr := f.transitions(b.Task()); tr != "pending_args/0 pending_resources/0 scheduled/0 running/0 finished/0" {
				t.Fatalf("a queued task's events: %s", tr)
			}
		}
	})

	t.Run("behind a task running past its estimate, only one waits", func(t *testing.T) {
		// One CPU: nowhere else to run. sleep ran in no time once, so its
		// estimate is short; this one runs ten minutes.
		f, a, aref := startLong(t, 1)
		var refs []ids.ObjectID
		var tasks []ids.TaskID
		for i := range 3 {
			b, brefs := f.submit(t, "add", nil, i, 30)
			queuedBehind(f, t, b, a)
			refs, tasks = append(refs, brefs[0]), append(tasks, b)
		}
		// It runs past four times its estimate: on the next dispatch the
		// tasks beyond the first go back, and none is queued again.
		f.clk.Advance(time.Second)
		last, lrefs := f.submit(t, "add", nil, 3, 30)
		refs, tasks = append(refs, lrefs[0]), append(tasks, last)
		for _, b := range tasks[1:3] {
			f.waitEvent(t, "given back", func(TaskEvent) bool {
				return strings.Contains(f.transitions(b), "scheduled/0 pending_args/0 pending_resources/0")
			})
		}
		f.o.mu.Lock()
		var queued []bool
		for _, b := range tasks {
			queued = append(queued, f.o.tasks[b].queuedLocked())
		}
		f.o.mu.Unlock()
		if fmt.Sprint(queued) != "[true false false false]" {
			t.Fatalf("queued behind the overdue task: %v, want the first only", queued)
		}
		if err := f.api.Cancel(aref, false, false); err != nil {
			t.Fatal(err)
		}
		sums(f, t, refs, 30)
	})
	t.Run("a worker gone idle takes back what waits behind a long task", func(t *testing.T) {
		f, long, lref := startLong(t, 2)
		other, orefs := f.submit(t, "sleep", nil, tenMinutes)
		f.waitState(t, other, stateRunning)
		var refs []ids.ObjectID
		var behindLong []ids.TaskID
		for i := range 4 {
			b, brefs := f.submit(t, "add", nil, i, 20)
			refs = append(refs, brefs[0])
			f.o.mu.Lock()
			bt := f.o.tasks[b]
			if bt.queuedLocked() && bt.worker.task != nil && bt.worker.task.id == long {
				behindLong = append(behindLong, b)
			}
			f.o.mu.Unlock()
		}
		if len(behindLong) == 0 {
			t.Fatal("no task was queued behind the long one")
		}
		// The other long task ends: its worker runs what waits behind it,
		// then goes idle and takes back what waits behind the first.
		if err := f.api.Cancel(orefs[0], false, false); err != nil {
			t.Fatal(err)
		}
		sums(f, t, refs, 20)
		f.o.mu.Lock()
		state := f.o.tasks[long].lc.State
		f.o.mu.Unlock()
		if state != stateRunning {
			t.Fatalf("the long task is %s: the tasks behind it waited for it", state)
		}
		for _, b := range behindLong {
			if tr := f.transitions(b); !strings.Contains(tr, "scheduled/0 pending_args/0 pending_resources/0 scheduled/0 running/0 finished/0") {
				t.Fatalf("a task taken back: events %s, want given back and placed again at no retry's cost", tr)
			}
		}
		if err := f.api.Cancel(lref, false, false); err != nil {
			t.Fatal(err)
		}
		_ = f.value(t, lref)
	})
}

// TestRunTimes: the run-time estimates behind the pipeline's depth.
func TestRunTimes(t *testing.T) {
	mod := &module{Digest: "m"}
	fn := func(name string) *task { return &task{mod: mod, function: name} }
	var r runTimes
	if _, ok := r.estimate(fn("a")); ok {
		t.Fatal("an estimate for a function never seen")
	}
	r.observe(fn("a"), 800*time.Microsecond)
	if d, ok := r.estimate(fn("a")); !ok || d != 800*time.Microsecond {
		t.Fatalf("after one run: %v %v", d, ok)
	}
	r.observe(fn("a"), 0)
	if d, _ := r.estimate(fn("a")); d != 700*time.Microsecond {
		t.Fatalf("moving average after 800µs, 0: %v, want 700µs", d)
	}
	if _, ok := r.estimate(&task{function: "a"}); ok {
		t.Fatal("an estimate for a task without a module")
	}
	r.observe(fn("neg"), -time.Second) // a clock that went back
	if _, ok := r.estimate(fn("neg")); ok {
		t.Fatal("a negative run time was kept")
	}
	for i := range maxRunTimes {
		r.observe(fn(fmt.Sprint(i)), time.Millisecond)
	}
	if len(r.m) > maxRunTimes {
		t.Fatalf("%d estimates kept, at most %d", len(r.m), maxRunTimes)
	}
}

// TestPipelineBatches: batches of trivial tasks on two CPUs (and a spare
// worker: a worker idle while others have tasks queued) all finish. Deep
// pipelines give tasks back to idle workers while their own workers run
// the tasks ahead; a hang here was a give-back the host read after the
// next task's Done (it dropped that Done), or a task taken back and queued
// behind the same worker again and again.
func TestPipelineBatches(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.NumCPUs, c.Workers = 2, 2 })
	dumpPipelineOnFailure(t, f)
	var got int
	f.call(t, "add", &got, 1, 1)
	for round := range 5 {
		refs := make([]ids.ObjectID, 300)
		for i := range refs {
			_, r := f.submit(t, "add", nil, i, round)
			refs[i] = r[0]
		}
		for i, ref := range refs {
			f.result(t, ref, &got)
			if got != i+round {
				t.Fatalf("round %d: add(%d, %d) = %d", round, i, round, got)
			}
		}
	}
}

// dumpPipelineOnFailure logs every worker's running and queued tasks if
// the test fails: what a lost or stuck task was waiting behind.
func dumpPipelineOnFailure(t *testing.T, f *fixture) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		f.o.mu.Lock()
		defer f.o.mu.Unlock()
		for pw := range f.o.pool.Workers() {
			w := procOf(pw)
			if w == nil {
				continue
			}
			line := fmt.Sprintf("worker %d dead=%v", w.pid, w.dead)
			if w.task != nil {
				line += fmt.Sprintf(" running %s (%s, sent=%v)", w.task.id, w.task.lc.State, w.task.sent.Load())
			}
			for _, q := range w.next {
				line += fmt.Sprintf(" | queued %s (%s, sent=%v stealing=%v)", q.id, q.lc.State, q.sent.Load(), q.stealing)
			}
			t.Log(line)
		}
		for id, tk := range f.o.tasks {
			if !tk.lc.State.Terminal() {
				t.Logf("task %s %s holding=%v queued=%v: %s", id, tk.lc.State, tk.lc.Holding, tk.queuedLocked(), f.transitions(id))
			}
		}
	})
}
