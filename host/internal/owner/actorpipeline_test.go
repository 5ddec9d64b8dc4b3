package owner

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/rayhost/rayhost/internal/ids"
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

	t.Run("the instance traps: the calls that waited behind run on the restarted actor", func(t *testing.T) {
		var got []int
		f.call(t, "actor_trap_behind", &got, n)
		if !slices.Equal(got, all) {
			t.Fatalf("the restarted actor recorded %v, want %v", got, all)
		}
	})
}
