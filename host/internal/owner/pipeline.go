package owner

import (
	"fmt"
	"slices"
	"time"

	"github.com/rayhost/rayhost/host/internal/lifecycle"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// Pipelining (Ray's tasks in flight per leased worker): when every CPU is
// taken and tasks wait for one, a worker running a task is sent the next
// tasks of the same shape before its task ends, so that each starts
// without the round trip of a Done and an Exec, and the frames of several
// travel in one write each way. A task queued behind another holds the
// same resources as the one ahead of it (scheduler.Follow: the host is
// over its total while both hold them) and stays scheduled
// (lifecycle.Reserved with Behind) until the ones ahead are done: then it
// is the worker's task and running (promoteLocked, from finishWorker), its
// timeout counted from there. Guarded by Owner.mu.
//
// How deep: one task may always wait behind a running one (as Ray's
// default of one task in flight beyond the running one); more only while
// what waits ahead of the next is known to be short: the recent run times
// of the functions queued on the worker, the running one's included, add
// up to at most pipelineBudget (runTimes; a function not seen yet counts
// as long), and at most maxPipelineDepth tasks wait. So trivial tasks
// travel in batches, and a task never waits behind more than about
// pipelineBudget of others' work beyond the one running task it would
// have waited for anyway.
//
// A task queued behind another goes back to the host, never started and
// at no retry's cost (ipc.TypeReturned, then unstart), when
//   - the task ahead makes a round trip to the host (a Get, a Wait): it may
//     block, and the ones behind must neither wait for it nor hold the CPU
//     the children it waits for need; no task is queued behind it again;
//   - it is cancelled (it ends as cancelled at once; its worker gives it
//     back, or cancels it if it has just started it);
//   - a worker is idle and giving back the queued tasks frees room for one
//     of them: it could run there now (stealLocked, ipc.TypeUnqueue);
//   - its worker dies (workerDied).
//
// Only plain tasks of a lone host are queued so, only without grants, and
// with the memory limit of the task ahead (the worker's memory held). A
// serial actor's calls are queued on its worker by rules of their own
// (actors.go, pipelineActorLocked); promoteLocked serves both.

const (
	// maxPipelineDepth bounds the tasks queued behind one running task.
	maxPipelineDepth = 16
	// pipelineBudget bounds the known work a task queued beyond the first
	// waits behind.
	pipelineBudget = 2 * time.Millisecond
)

// pipelineLocked queues the next tasks behind the running task of each
// worker that may take them, a task to each worker in turn (the shortest
// queue first), and returns their assignments.
func (dp *dispatcher) pipelineLocked() []assignment {
	h := dp.o
	if h.cfg.Clustered || h.sched.Queued() == 0 || len(h.needWorker) > 0 || h.closed {
		return nil
	}
	now := h.clock.Now()
	var ws []*workerProc
	for pw := range h.pool.Workers() {
		w := procOf(pw)
		if w == nil {
			continue
		}
		if slices.ContainsFunc(w.next, func(q *task) bool { return q.stealing }) {
			// Tasks are being taken back to run on an idle worker: none is
			// queued again until they are back, or the first back would
			// be queued behind the same task again (it cannot run while
			// the others still hold their resources).
			return nil
		}
		if w.mayQueueBehindLocked(now, false) {
			ws = append(ws, w)
		}
	}
	var out []assignment
	for len(ws) > 0 && h.sched.Queued() > 0 {
		// The shortest queues first: tasks submitted one at a time spread
		// over the workers.
		slices.SortStableFunc(ws, func(a, b *workerProc) int { return len(a.next) - len(b.next) })
		more := ws[:0]
		for _, w := range ws {
			ahead := w.task
			limit := h.disp.memoryLimitOf(ahead)
			it, ok := h.sched.Follow(ahead.req, func(t *task) bool {
				return t.kind == abi.KindCall && t.actor == nil && t.foreign == nil && t.grants.Empty() &&
					h.disp.memoryLimitOf(t) == limit && !t.lc.Cancelled
			})
			if !ok {
				continue
			}
			t := it.Value
			if t.mod != nil {
				noteModule(&w.ran, t.mod.Digest)
			}
			t.worker = w
			w.next = append(w.next, t)
			t.sent.Store(false)
			h.stepLocked(t, lifecycle.Reserved{Behind: fmt.Sprintf("queued behind task %s on worker process %d", ahead.id, w.pid)})
			out = append(out, assignment{t: t, w: w})
			if w.mayQueueBehindLocked(now, true) {
				more = append(more, w)
			}
		}
		ws = more
	}
	return out
}

// mayQueueBehindLocked reports whether w runs a task another may be queued
// behind now. The Execs must reach the worker in their order: the next is
// queued once the last one queued is written, or (inCall) when it is in
// the assignments being made, which start writes in order.
func (w *workerProc) mayQueueBehindLocked(now time.Time, inCall bool) bool {
	t := w.task
	if !(w.pw != nil && w.pipelines && !w.dead && w.actor == nil && w.foreign == nil && w.remote == nil &&
		len(w.calls) == 0 && t != nil && t.kind == abi.KindCall && t.actor == nil && t.foreign == nil &&
		t.lc.State == stateRunning && t.lc.Holding && !t.lc.Cancelled && t.waited != t.lc.Attempt+1 && t.sent.Load()) {
		return false
	}
	switch n := len(w.next); {
	case n == 0:
		return true
	case n >= maxPipelineDepth || !inCall && !w.next[n-1].sent.Load() || w.overdueLocked(now):
		return false
	}
	rt := &w.h.runTimes
	ahead, ok := rt.estimate(t)
	for _, q := range w.next {
		d, known := rt.estimate(q)
		ahead += d
		ok = ok && known
	}
	return ok && ahead <= pipelineBudget
}

// overdueFactor: a running task is overdue once it has run this many
// times its function's estimate (and at least pipelineBudget).
const overdueFactor = 4

// overdueLocked reports whether w's running task has run well past its
// function's estimate (or has none): what waits behind it beyond the first
// task was queued on an estimate that proved wrong (a function usually
// fast, or a guest that runs fast once and then long).
func (w *workerProc) overdueLocked(now time.Time) bool {
	t := w.task
	if t == nil {
		return false
	}
	d, ok := w.h.runTimes.estimate(t)
	return !ok || now.Sub(t.ranAt) > max(pipelineBudget, overdueFactor*d)
}

// runTimes keeps the recent run time of each function (a moving average
// over about eight runs), for the pipeline's depth. It forgets everything
// when it has maxRunTimes functions: an estimate is an optimisation, and
// a function not seen counts as long. Guarded by Owner.mu.
type runTimes struct {
	m map[runKey]time.Duration
}

type runKey struct{ module, function string }

const maxRunTimes = 4096

func runKeyOf(t *task) (runKey, bool) {
	if t.mod == nil {
		return runKey{}, false
	}
	return runKey{t.mod.Digest, t.function}, true
}

// observe records that t ran for d.
func (r *runTimes) observe(t *task, d time.Duration) {
	k, ok := runKeyOf(t)
	if !ok || d < 0 {
		return
	}
	if r.m == nil || len(r.m) >= maxRunTimes {
		r.m = map[runKey]time.Duration{}
	}
	if old, seen := r.m[k]; seen {
		d = old + (d-old)/8
	}
	r.m[k] = d
}

// estimate returns t's function's recent run time, if it is known.
func (r *runTimes) estimate(t *task) (time.Duration, bool) {
	k, ok := runKeyOf(t)
	if !ok {
		return 0, false
	}
	d, ok := r.m[k]
	return d, ok
}

// promoteLocked: w's task ended; the task queued behind it, if any, is now
// w's task, and running (it holds its resources already). It reports
// whether there was one. A task cancelled while it was queued is w's
// until w gives it back or ends it.
func (w *workerProc) promoteLocked() bool {
	if len(w.next) == 0 || w.dead {
		return false
	}
	t := w.next[0]
	a := t.actor
	if t.kind == abi.KindActorCall && a != nil && (a.broken || a.worker != w) {
		// The worker dropped the actor's instance (its worker is about to
		// be stopped): the calls behind go back to the actor's queue when
		// it dies (actorWorkerDied), not to the instance that is gone.
		return false
	}
	w.next[0] = nil
	w.next, w.task = w.next[1:], t
	t.stealing = false
	if t.kind == abi.KindActorCall && a != nil {
		a.running = append(a.running, t)
	}
	if t.lc.State == stateScheduled {
		w.h.stepLocked(t, lifecycle.WorkerAssigned{}) // running; its timer starts
	}
	t.ranAt = w.h.clock.Now()
	return true
}

// stealLocked asks for the tasks queued behind others back: all of them
// while a worker is idle and giving them back frees room for one of them
// to run now; and on every dispatch, those beyond the first behind a task
// that is overdue (overdueLocked), so that what was queued on a wrong
// estimate waits no longer than the one task it would have waited for
// without the pipeline.
func (dp *dispatcher) stealLocked() []assignment {
	h := dp.o
	// An actor's calls are never taken back: they could run nowhere else.
	stealable := func(q *task) bool { return q.actor == nil && !q.stealing && !q.lc.State.Terminal() && q.sent.Load() }
	var out []assignment
	if h.pool.Stats().Idle > 0 {
		var back []scheduler.Resources
		for pw := range h.pool.Workers() {
			w := procOf(pw)
			if w == nil || w.dead {
				continue
			}
			for _, q := range w.next {
				// Only once its Exec is written: an Unqueue ahead of it
				// would be ignored.
				if stealable(q) {
					out = append(out, assignment{t: q, w: w, unqueue: true})
					back = append(back, q.req)
				}
			}
		}
		if len(out) > 0 && slices.ContainsFunc(out, func(a assignment) bool { return h.sched.FitsReturned(a.t.req, back) }) {
			for _, a := range out {
				a.t.stealing = true
			}
			return out
		}
		out = out[:0]
	}
	var now time.Time
	for pw := range h.pool.Workers() {
		w := procOf(pw)
		if w == nil || w.dead || w.actor != nil || len(w.next) < 2 {
			continue
		}
		if now.IsZero() {
			now = h.clock.Now()
		}
		if !w.overdueLocked(now) {
			continue
		}
		for _, q := range w.next[1:] {
			if stealable(q) {
				q.stealing = true
				out = append(out, assignment{t: q, w: w, unqueue: true})
			}
		}
	}
	return out
}

// queuedTaskLocked returns the task queued on w whose ID is id.
func (w *workerProc) queuedTaskLocked(id ids.TaskID) *task {
	for _, t := range w.next {
		if t.id == id {
			return t
		}
	}
	return nil
}

// queuedLocked reports whether t waits behind another task on its worker.
func (t *task) queuedLocked() bool {
	return t.worker != nil && slices.Contains(t.worker.next, t)
}

// returned: w gave back t, which it never started (ipc.TypeReturned).
func (dp *dispatcher) returned(w *workerProc, t *task, why string) {
	h := dp.o
	h.mu.Lock()
	if t.worker != w || (!slices.Contains(w.next, t) && w.task != t) {
		h.mu.Unlock()
		return
	}
	t.stealing = false
	if t.lc.State.Terminal() {
		// Cancelled while it was queued: it has ended; w is free of it.
		if w.endTaskLocked(t) && !w.promoteLocked() {
			w.memHeld = 0
			w.idleLocked()
		}
		t.worker = nil
		starts := h.disp.dispatchLocked()
		h.mu.Unlock()
		h.disp.start(starts)
		return
	}
	// In the same critical section: a cancel in between would end t
	// while it is still w's, and unstart would leave it there.
	starts, later := dp.unstartLocked(t, w, false, why)
	h.mu.Unlock()
	h.disp.start(starts)
	run(later)
}
