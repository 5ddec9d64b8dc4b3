package owner

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/testutil/build"
)

// TestActorPipeline: a serial actor's next calls are sent to its worker
// while a call runs, to wait there in order (scheduled, "queued behind
// call …"), and each runs as the one ahead ends. A call cancelled while it
// waits there never runs; if the worker dies, or the actor's instance
// traps, the calls that waited there run on the restarted actor, in order,
// and none is lost or run twice.
func TestActorPipeline(t *testing.T) {
	f := newFixture(t, nil)
	const n = 8
	// behind waits until the n record calls of the actor_behind driver
	// drv wait behind its slow call, and returns their task IDs in the
	// order they were queued (record(0) first) and the slow call's ID.
	behind := func(t *testing.T, drv ids.TaskID) (recs []ids.TaskID, slow ids.TaskID) {
		t.Helper()
		f.waitEvent(t, fmt.Sprintf("%d calls queued behind the slow call", n), func(TaskEvent) bool {
			recs, slow = nil, ids.TaskID{}
			evs, _ := f.o.events.list()
			for _, ev := range evs {
				if ev.Parent != drv {
					continue
				}
				if strings.Contains(ev.Function, "slowly") {
					slow = ev.Task
				}
				if strings.Contains(ev.Function, "record") && ev.State == stateScheduled.String() && strings.Contains(ev.Message, "queued behind call") {
					recs = append(recs, ev.Task)
				}
			}
			return len(recs) == n
		})
		return recs, slow
	}
	want := func(got []int, idx ...int) {
		t.Helper()
		w := append([]int{-1}, idx...)
		if !slices.Equal(got, w) {
			t.Fatalf("the actor recorded %v, want %v", got, w)
		}
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}

	t.Run("calls wait behind the running one; cancelled ones never run", func(t *testing.T) {
		drv, refs := f.submit(t, "actor_behind", nil, tenMinutes, n)
		recs, slow := behind(t, drv)
		var kept []int
		for i, id := range recs {
			if i%2 == 1 {
				if err := f.api.Cancel(id.Return(0), false, false); err != nil {
					t.Fatal(err)
				}
				continue
			}
			kept = append(kept, i)
		}
		// The slow call is cancelled too (ray.Sleep returns): the calls
		// behind it run now.
		if err := f.api.Cancel(slow.Return(0), false, false); err != nil {
			t.Fatal(err)
		}
		var got []int
		f.result(t, refs[0], &got)
		want(got, kept...)
		if tr := f.transitions(recs[1]); !strings.HasSuffix(tr, "cancelled/0") || strings.Contains(tr, "running") {
			t.Fatalf("a call cancelled while it waited behind: %s, want cancelled, never running", tr)
		}
	})

	t.Run("the worker dies: the calls that waited there run on the restarted actor", func(t *testing.T) {
		drv, refs := f.submit(t, "actor_behind", nil, tenMinutes, n)
		recs, slow := behind(t, drv)
		f.killWorker(t, slow)
		var got []int
		f.result(t, refs[0], &got)
		// The restart ran the constructor again: -1 is gone with the old
		// instance, and only the calls that never started there ran.
		if !slices.Equal(got, all) {
			t.Fatalf("the restarted actor recorded %v, want %v", got, all)
		}
		for _, id := range recs {
			if tr := f.transitions(id); strings.Count(tr, "running") != 1 || strings.Contains(tr, "retried") {
				t.Fatalf("a call that waited behind: %s, want one run at no retry's cost", tr)
			}
		}
	})

	t.Run("a call retried after an error runs before the calls submitted behind it", func(t *testing.T) {
		// Nothing waits in the worker behind a call whose failure would
		// run it again first (its options retry errors).
		var got []int
		f.call(t, "once_behind", &got, 300, 4, false)
		if !slices.Equal(got, []int{-1, 1000, 0, 1, 2, 3}) {
			t.Fatalf("the actor recorded %v, want [-1 1000 0 1 2 3]", got)
		}
		f.call(t, "once_behind", &got, 300, 4, true) // a trap: the actor restarts
		if !slices.Equal(got, []int{1000, 0, 1, 2, 3}) {
			t.Fatalf("after a trap the restarted actor recorded %v, want [1000 0 1 2 3]", got)
		}
	})

	t.Run("a retried call's Exec goes before the calls that come meanwhile", func(t *testing.T) {
		// The retry's Exec is held until the next calls are ready at the
		// host: they must not be written ahead of it (the retry's first
		// attempt was sent, its second is not yet).
		var drv atomic.Value // ids.TaskID of the driver, once submitted
		ready := func() bool {
			d, _ := drv.Load().(ids.TaskID)
			evs, _ := f.o.events.list()
			n := 0
			for _, ev := range evs {
				if ev.Parent == d && strings.Contains(ev.Function, "record") && ev.State == stateScheduled.String() {
					n++
				}
			}
			return n >= 3 // record(-1), record(0), record(1)
		}
		hook := func(tk *task) {
			if tk.kind != abi.KindActorCall || !strings.HasSuffix(tk.function, "fail_once") || tk.lc.Attempt == 0 {
				return
			}
			guard := time.After(build.HangGuard)
			for {
				next := f.o.events.nextAdded()
				if ready() {
					return
				}
				select {
				case <-next:
				case <-guard:
					return // the test's Get fails: the calls never came
				}
			}
		}
		beforeExec.Store(&hook)
		defer beforeExec.Store(nil)
		id, refs := f.submit(t, "retry_race", nil, 200, 600)
		drv.Store(id)
		var got []int
		f.result(t, refs[0], &got)
		if !slices.Equal(got, []int{-1, 1000, 0, 1}) {
			t.Fatalf("the actor recorded %v, want [-1 1000 0 1]", got)
		}
	})

	t.Run("a call cancelled as its worker starts it is served nothing", func(t *testing.T) {
		// spawn_after waits behind slowly; the test cancels slowly, and
		// holds its Done at the host until it has cancelled spawn_after too:
		// by then the worker has started spawn_after (the Done of the call
		// ahead is written before the next starts), which submits a child.
		// The host ended it before it ran: the child must never exist.
		drv, refs := f.submit(t, "actor_spawn_behind", nil, tenMinutes, 300)
		var slow, spawn ids.TaskID
		f.waitEvent(t, "spawn_after queued behind slowly", func(ev TaskEvent) bool {
			if ev.Parent == drv && strings.Contains(ev.Function, "slowly") {
				slow = ev.Task
			}
			if ev.Parent == drv && strings.Contains(ev.Function, "spawn_after") && strings.Contains(ev.Message, "queued behind call") {
				spawn = ev.Task
			}
			return !slow.IsZero() && !spawn.IsZero()
		})
		var once sync.Once
		hook := func(task ids.TaskID) {
			if task == slow {
				once.Do(func() {
					if err := f.api.Cancel(spawn.Return(0), false, false); err != nil {
						t.Error(err)
					}
				})
			}
		}
		beforeDone.Store(&hook)
		defer beforeDone.Store(nil)
		if err := f.api.Cancel(slow.Return(0), false, false); err != nil {
			t.Fatal(err)
		}
		var got []int
		f.result(t, refs[0], &got) // record(1) ran after spawn_after: its frames were all read
		if !slices.Equal(got, []int{-1, 1}) {
			t.Fatalf("the actor recorded %v, want [-1 1]", got)
		}
		if tr := f.transitions(spawn); !strings.HasSuffix(tr, "cancelled/0") {
			t.Fatalf("spawn_after: %s, want cancelled", tr)
		}
		evs, _ := f.o.events.list()
		for _, ev := range evs {
			if ev.Parent == spawn {
				t.Fatalf("the cancelled call's child was submitted: %+v", ev)
			}
		}
	})

	t.Run("the instance traps: the calls that waited behind run on the restarted actor", func(t *testing.T) {
		var got []int
		f.call(t, "actor_trap_behind", &got, n)
		if !slices.Equal(got, all) {
			t.Fatalf("the restarted actor recorded %v, want %v", got, all)
		}
	})
}
