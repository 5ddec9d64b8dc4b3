package owner

import (
	"fmt"

	"github.com/rayhost/rayhost/host/internal/lifecycle"
	"github.com/rayhost/rayhost/internal/abi"
)

// Pipelining (Ray's tasks in flight per leased worker, at a depth of one):
// when every CPU is taken and tasks wait for one, a worker running a task
// is sent the next task of the same shape before its task ends, so that
// the next one starts without the round trip of a Done and an Exec. The
// task queued behind holds the same resources as the one ahead of it
// (scheduler.Follow: the host is over its total while both hold them) and
// stays scheduled (lifecycle.Reserved with Behind) until the one ahead is
// done: then it is the worker's task and running (promoteLocked, from
// finishWorker), its timeout counted from there. Guarded by Owner.mu.
//
// A task queued behind another goes back to the host, never started and
// at no retry's cost (ipc.TypeReturned, then unstart), when
//   - the task ahead makes a round trip to the host (a Get, a Wait): it may
//     block, and the one behind must neither wait for it nor hold the CPU
//     the children it waits for need; no task is queued behind it again;
//   - it is cancelled (it ends as cancelled at once; its worker gives it
//     back, or cancels it if it has just started it);
//   - a worker is idle and the host is no longer over its total: it could
//     run there now (stealLocked, ipc.TypeUnqueue);
//   - its worker dies (workerDied).
//
// Only plain tasks of a lone host are queued so, only without grants, and
// with the memory limit of the task ahead (the worker's memory held).

// pipelineLocked queues the next task behind the running task of each
// worker that may take one, and returns their assignments.
func (dp *dispatcher) pipelineLocked() []assignment {
	h := dp.o
	if h.cfg.Clustered || h.sched.Queued() == 0 || len(h.needWorker) > 0 || h.closed {
		return nil
	}
	var ws []*workerProc
	for pw := range h.pool.Workers() {
		if w := procOf(pw); w != nil && w.mayQueueBehindLocked() {
			ws = append(ws, w)
		}
	}
	var out []assignment
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
		t.worker, w.next = w, t
		t.sent.Store(false)
		h.stepLocked(t, lifecycle.Reserved{Behind: fmt.Sprintf("queued behind task %s on worker process %d", ahead.id, w.pid)})
		out = append(out, assignment{t: t, w: w})
	}
	return out
}

// mayQueueBehindLocked reports whether w runs a task another may be queued
// behind.
func (w *workerProc) mayQueueBehindLocked() bool {
	t := w.task
	return w.pw != nil && w.pipelines && !w.dead && w.next == nil && w.actor == nil && w.foreign == nil && w.remote == nil &&
		len(w.calls) == 0 && t != nil && t.kind == abi.KindCall && t.actor == nil && t.foreign == nil &&
		t.lc.State == stateRunning && t.lc.Holding && !t.lc.Cancelled && t.waited != t.lc.Attempt+1 && t.sent.Load()
}

// promoteLocked: w's task ended; the task queued behind it, if any, is now
// w's task, and running (it holds its resources already). It reports
// whether there was one. A task cancelled while it was queued is w's
// until w gives it back or ends it.
func (w *workerProc) promoteLocked() bool {
	t := w.next
	if t == nil || w.dead {
		return false
	}
	w.next, w.task = nil, t
	t.stealing = false
	if t.lc.State == stateScheduled {
		w.h.stepLocked(t, lifecycle.WorkerAssigned{}) // running; its timer starts
	}
	return true
}

// stealLocked asks for the tasks queued behind others back while a worker
// is idle and the host is within its total: they could run now.
func (dp *dispatcher) stealLocked() []assignment {
	h := dp.o
	if h.sched.Overcommitted() || h.pool.Stats().Idle == 0 {
		return nil
	}
	var out []assignment
	for pw := range h.pool.Workers() {
		// Only once its Exec is written: an Unqueue ahead of it would be
		// ignored.
		if w := procOf(pw); w != nil && w.next != nil && !w.next.stealing && !w.dead && !w.next.lc.State.Terminal() && w.next.sent.Load() {
			w.next.stealing = true
			out = append(out, assignment{t: w.next, w: w, unqueue: true})
		}
	}
	return out
}

// queuedLocked reports whether t waits behind another task on its worker.
func (t *task) queuedLocked() bool {
	return t.worker != nil && t.worker.next == t
}

// returned: w gave back t, which it never started (ipc.TypeReturned).
func (dp *dispatcher) returned(w *workerProc, t *task, why string) {
	h := dp.o
	h.mu.Lock()
	if t.worker != w || (w.next != t && w.task != t) {
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
	h.mu.Unlock()
	dp.unstart(t, w, false, why)
}
