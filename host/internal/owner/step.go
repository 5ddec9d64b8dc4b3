package owner

import (
	"context"
	"slices"

	"github.com/rayhost/rayhost/host/internal/lifecycle"
	"github.com/rayhost/rayhost/internal/abi"
)

// The shell around host/internal/lifecycle: stepLocked feeds an event to a
// task's state machine and carries out the actions that touch the host's
// tables (under h.mu); the actions that block, send or call back into the
// host come back as funcs to run once h.mu is released.

// stepLocked feeds ev to t; vals are the results of a successful Done. The
// caller holds h.mu and runs the returned funcs after releasing it. An
// event the task's state does not take does nothing.
func (h *Owner) stepLocked(t *task, ev lifecycle.Event, vals ...abi.Value) (later []func()) {
	return h.stepCtxLocked(context.Background(), t, ev, vals...)
}

// stepCtxLocked is stepLocked with the context of the call that submitted
// the task, for the waits on its arguments.
func (h *Owner) stepCtxLocked(ctx context.Context, t *task, ev lifecycle.Event, vals ...abi.Value) (later []func()) {
	acts, err := t.lc.Step(ev)
	if err != nil {
		return nil
	}
	return h.applyLocked(ctx, t, acts, vals)
}

func (h *Owner) applyLocked(ctx context.Context, t *task, acts []lifecycle.Action, vals []abi.Value) (later []func()) {
	forgot, retried := false, false
	defer func() {
		// After the seals above: the refs the results contain are counted
		// before the attempt's own are released (refs.go).
		switch {
		case forgot:
			attempt, keep := t.lc.Attempt, h.lineage[t.id] == t
			later = append(later, func() { h.refs.ended(t, attempt, true, keep) })
		case retried:
			attempt := t.lc.Attempt - 1
			later = append(later, func() { h.refs.ended(t, attempt, false, false) })
		}
	}()
	for i := 0; i < len(acts); i++ {
		switch a := acts[i].(type) {
		case lifecycle.Record:
			h.recordAttempt(t, a.State, a.Msg, a.Attempt)
		case lifecycle.Enqueue:
			pl := h.disp.placement(t)
			err := h.sched.Check(t.req, pl)
			if err != nil && (!h.cfg.Clustered || pl.Hard()) {
				// A lone host: no host that fits can ever come. Hard
				// affinity to a host that is not there fails at once, as
				// Ray's TaskUnschedulableError.
				more, _ := t.lc.Step(lifecycle.Infeasible{Why: err.Error()})
				acts = append(acts, more...)
				break
			}
			// In a cluster, a host that fits may join: the task waits, as
			// Ray's infeasible tasks do, and says why.
			h.sched.Park(t.id, t.req, pl, t)
			if err != nil {
				more, _ := t.lc.Step(lifecycle.Infeasible{Why: err.Error(), Wait: true})
				acts = append(acts, more...)
				later = append(later, func() { h.disp.warnInfeasible(t, err.Error()) })
			}
		case lifecycle.Dequeue:
			h.dequeueLocked(t, a.From)
			if w := t.worker; w != nil && t.queuedLocked() {
				// Cancelled while queued behind another task on w (a worker
				// gives back its queued tasks, and gave this one back if
				// it died): w gives it back, or, if it has just started
				// it, cancels it. It stays w's until w says which.
				later = append(later, func() { w.cancel(t) })
			}
		case lifecycle.Release:
			h.sched.ReleaseOn(a.Node, t.req)
		case lifecycle.ReleaseCPU:
			h.sched.Release(t.req)
		case lifecycle.AcquireCPU:
			h.sched.Acquire(t.req)
		case lifecycle.NeedWorker:
			h.needWorker = append(h.needWorker, t)
		case lifecycle.StartTimer:
			if d := h.disp.timeoutOf(t); d > 0 {
				attempt := a.Attempt
				t.timer = h.clock.AfterFunc(d, func() { h.disp.expire(t, attempt, d) })
			}
		case lifecycle.StopTimer:
			if t.timer != nil {
				t.timer.Stop()
				t.timer = nil
			}
		case lifecycle.CloseCancel:
			close(t.cancelCh)
		case lifecycle.Forget:
			forgot = true
			if _, ok := h.tasks[t.id]; ok {
				t.job.counted(t, t.lc.State)
				if t.tree != nil {
					t.tree.live--
				}
				delete(h.tasks, t.id)
			}
		case lifecycle.Revive:
			h.refs.rebuilding(t)
			t.worker, t.stderr = nil, nil
			t.cancelCh = make(chan struct{})
			h.tasks[t.id] = t
			if t.tree != nil {
				t.tree.live++
			}
			// A recursive cancel of its parent, still running, reaches the
			// rebuild too (the parent dropped it from its children when it
			// ended).
			if p := h.tasks[t.parent]; p != nil && !slices.Contains(p.children, t.id) {
				p.addChild(t.id, h.tasks)
			}
		case lifecycle.Retry:
			retried = true
			t.worker, t.stderr = nil, nil
			if t.gen != nil {
				t.gen.seen = 0
			}
			te := a.Err
			later = append(later, func() {
				h.log.Info("retrying a task", "task_id", t.id, "attempt", t.lc.Attempt, "cause", te.Message)
			})
		case lifecycle.Exec:
			// The dispatcher that assigned the worker sends the Exec.
		case lifecycle.KillWorker:
			if w := t.worker; w != nil {
				later = append(later, w.kill)
			}
		case lifecycle.CancelInWorker:
			if w := t.worker; w != nil {
				later = append(later, func() { w.cancel(t) })
			}
		case lifecycle.CancelChildren:
			var children []*task
			for _, c := range t.children {
				if ct := h.tasks[c]; ct != nil {
					children = append(children, ct)
				}
			}
			force := a.Force
			later = append(later, func() {
				for _, c := range children {
					h.cancelTask(c, force, true)
				}
			})
		case lifecycle.AwaitArgs:
			later = append(later, func() { h.awaitArgs(ctx, t) })
		case lifecycle.FetchArgs:
			later = append(later, func() { h.disp.refetch(t) })
		case lifecycle.Requeue:
			later = append(later, func() { h.enqueue(t) })
		case lifecycle.QueueOnActor:
			if a.Front {
				// A retried call runs before the calls queued behind it.
				t.actor.queue = append([]*task{t}, t.actor.queue...)
				break
			}
			later = append(later, func() { h.acts.queueOnActor(t) })
		case lifecycle.SealResults:
			h.lin.keepLineageLocked(t, vals)
			later = append(later, func() { h.sealResults(t, vals) })
		case lifecycle.SealFailure:
			te := a.Err
			if te != nil && te.TaskID == "" {
				te = h.taskError(t, te.Kind, te.Message)
			}
			later = append(later, func() { h.sealFailure(t, te) })
		}
	}
	return later
}

// dequeueLocked takes t out of the queue it waits in.
func (h *Owner) dequeueLocked(t *task, from taskState) {
	if a := t.actor; a != nil && t.kind == abi.KindActorCall {
		if i := slices.Index(a.queue, t); i >= 0 {
			a.queue = slices.Delete(a.queue, i, i+1)
		}
		return
	}
	switch from {
	case statePendingResources:
		h.sched.Remove(t.id)
	case stateScheduled:
		if i := slices.Index(h.needWorker, t); i >= 0 {
			h.needWorker = slices.Delete(h.needWorker, i, i+1)
		}
	}
}

func run(fns []func()) {
	for _, fn := range fns {
		fn()
	}
}
