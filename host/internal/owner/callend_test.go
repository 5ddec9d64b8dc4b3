package owner

import (
	"testing"

	"github.com/rayhost/rayhost/internal/ids"
)

// TestCallEndStopsItsWaits: a concurrent actor's call may end with ops it
// started still blocked in the host (a get of a ref that never resolves).
// The end of the call, on its worker or by the worker's death, stops them,
// so a guest that does this on every call cannot grow the host.
func TestCallEndStopsItsWaits(t *testing.T) {
	gp := &guestOps{o: &Owner{}}
	for _, end := range []struct {
		name string
		do   func(w *workerProc, t *task)
	}{
		{"the call ends", func(w *workerProc, t *task) { w.endTaskLocked(t) }},
		{"the call's worker ends", func(w *workerProc, t *task) {
			for _, c := range w.calls {
				w.endCallLocked(c)
			}
		}},
	} {
		t.Run(end.name, func(t *testing.T) {
			w := &workerProc{}
			call := &task{id: ids.NewTaskID(), cancelCh: make(chan struct{})}
			w.setCallLocked(call)
			stop, done := gp.waitStop(call)
			defer done()
			select {
			case <-stop:
				t.Fatal("stopped while the call runs")
			default:
			}
			end.do(w, call)
			waitFor(t, stop, "the blocked op to stop with its call")
			if len(w.calls) != 0 {
				t.Fatalf("after the end: %d calls", len(w.calls))
			}
			// An op whose goroutine reaches its wait only after the call
			// ended (the Done frame was handled first) stops at once too.
			late, lateDone := gp.waitStop(call)
			defer lateDone()
			waitFor(t, late, "an op that began after its call ended to stop")
		})
	}
	// A task that is not a concurrent call is stopped by its cancel alone.
	plain := &task{id: ids.NewTaskID(), cancelCh: make(chan struct{})}
	stop, done := gp.waitStop(plain)
	defer done()
	close(plain.cancelCh)
	waitFor(t, stop, "the cancel to stop the op")
}
