package owner

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/rayhost/rayhost/host/internal/lifecycle"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// An actor's life:
//
//	create ─► creating ─► alive ─► (worker died, restarts left) ─► restarting ─► alive …
//	             │          │
//	             │          └─► (killed, or no restarts left) ─► dead
//	             └─► (constructor failed) ─► dead
//
// Its creation is a task (ID = the actor's ID) scheduled like any other,
// holding 1 CPU by default. When the constructor succeeds, the worker that
// ran it becomes the actor's: it keeps the instance holding the state and
// runs nothing else. The CPU is then given back (Ray's rule: 1 CPU to place
// an actor, 0 while it lives) unless the actor asked for CPUs explicitly.
// Method calls wait in one queue per actor in the order they were
// submitted, and start in that order: one at a time, or up to
// max_concurrency at once on the actor's one worker and instance (the
// guest multiplexes them, guest-sdk/ABI.md §5, "Concurrent actors").
type actorState uint8

const (
	actorCreating actorState = iota
	actorAlive
	actorRestarting
	actorDead
)

func (s actorState) String() string {
	return [...]string{"creating", "alive", "restarting", "dead"}[s]
}

type actor struct {
	id              ids.TaskID
	class           string
	name, namespace string
	create          *task // the creation task, run again on restart
	holdCPU         bool  // the actor asked for CPUs: keep them while alive
	cpuHeld         bool  // it holds them now

	// Guarded by Host.mu.
	state          actorState
	worker         *workerProc
	queue          []*task // method calls in submission order
	running        []*task // the calls its worker runs, in start order
	maxConc        int     // calls that may run at once (max_concurrency; 1 by default)
	restarts       int
	maxRestarts    int32
	maxTaskRetries int32
	calls          int
	killed         bool   // no restart wanted
	killCause      string // why it was killed, when not by a kill op
	detached       bool   // no fate-sharing with its owner (actorlife.go)
	broken         bool   // its instance is gone; waiting for its worker to die
	cause          string
}

func (a *actor) key() string { return a.namespace + "/" + a.name }

// submitActor registers a task that creates or calls an actor; it reports
// false when the task failed at once (its failure is sealed).
func (ac *actorTable) submitActor(ctx context.Context, t *task, req *abi.SubmitRequest) bool {
	h := ac.o
	switch t.kind {
	case abi.KindActorCreate:
		a := &actor{id: t.id, class: t.function, name: req.Name, namespace: req.Namespace, create: t,
			maxRestarts: req.MaxRestarts, maxTaskRetries: req.MaxTaskRetries, holdCPU: req.Resources.CPUs != -1,
			detached: req.Detached, maxConc: max(1, int(req.MaxConcurrency))}
		h.mu.Lock()
		if _, dup := h.actors[a.id]; dup {
			h.mu.Unlock()
			return true // a retried parent creates it again
		}
		if a.detached {
			if err := ac.checkDetachedLocked(); err != nil {
				a.state, a.cause = actorDead, "its creation was refused: "+err.Error()
				h.actors[a.id] = a
				h.mu.Unlock()
				h.submitFailed(t, h.taskError(t, abi.ErrorLimit, err.Error()))
				return false
			}
		}
		if a.name != "" {
			if other, taken := h.actorNames[a.key()]; taken {
				h.mu.Unlock()
				h.submitFailed(t, h.taskError(t, abi.ErrorBadRequest,
					fmt.Sprintf("an actor named %q already exists in namespace %q (%s)", a.name, a.namespace, other)))
				return false
			}
			h.actorNames[a.key()] = a.id
		}
		h.actors[a.id] = a
		h.mu.Unlock()
		t.actor = a
	case abi.KindActorCall:
		h.mu.Lock()
		a := h.actors[req.Actor]
		if a != nil && a.state != actorDead {
			t.actor = a
			a.queue = append(a.queue, t)
		}
		var cause string
		if a != nil {
			cause = a.cause
		}
		h.mu.Unlock()
		if t.actor == nil {
			msg := fmt.Sprintf("actor %s does not exist on this host", req.Actor)
			if a != nil {
				msg = fmt.Sprintf("actor %s (%s) is dead: %s", req.Actor, a.class, cause)
			}
			h.submitFailed(t, h.taskError(t, abi.ErrorActorDied, msg))
			return false
		}
	}
	return true
}

// actorCallReady queues a method call whose arguments are ready.
func (ac *actorTable) actorCallReady(t *task) {
	h := ac.o
	h.mu.Lock()
	later := h.stepLocked(t, lifecycle.ActorReady{}) // waiting for its actor
	var starts []assignment
	if t.actor != nil {
		starts = h.acts.dispatchActorLocked(t.actor)
	}
	h.mu.Unlock()
	run(later)
	h.disp.start(starts)
}

// dispatchActorLocked starts the actor's next calls that can run now: the
// actor is alive and runs fewer calls than it may, and the first call in
// its queue has its arguments. Later calls wait behind it, keeping
// submission order.
func (ac *actorTable) dispatchActorLocked(a *actor) []assignment {
	h := ac.o
	var out []assignment
	for a.state == actorAlive && !a.broken && len(a.running) < a.concurrency() && len(a.queue) > 0 && a.worker != nil {
		t := a.queue[0]
		if t.lc.State != stateScheduled {
			break
		}
		a.queue = a.queue[1:]
		a.running = append(a.running, t)
		t.worker = a.worker
		t.sent.Store(false) // a retried call's first Exec was sent: this one is not yet
		if a.concurrency() > 1 {
			a.worker.setCallLocked(t)
		} else {
			a.worker.task = t
		}
		h.stepLocked(t, lifecycle.WorkerAssigned{}) // Record and Exec: the Exec is the assignment
		out = append(out, assignment{t: t, w: a.worker})
	}
	return append(out, ac.pipelineActorLocked(a, len(out) > 0)...)
}

// pipelineActorLocked sends the next calls of a serial actor to its worker
// while one runs, up to maxPipelineDepth, to wait there in order (never
// behind a call whose failure would run it again first): each then
// starts as the one ahead ends, without the round trip of a Done and an
// Exec, and the frames of several travel in one write each way. A call so
// queued stays scheduled until the calls ahead are done, then runs
// (promoteLocked, from finishWorker). The worker never gives an actor's
// call back (it could run nowhere else, and not before the calls ahead);
// one cancelled while it waits there ends at once and the worker skips it
// in its turn; if the worker dies, the calls that waited there go back to
// the head of the actor's queue, in order, unstarted. inCall: the running
// call's Exec is among the assignments being made (start writes them in
// order), else a call is queued only once the one ahead is written.
func (ac *actorTable) pipelineActorLocked(a *actor, inCall bool) []assignment {
	h := ac.o
	w := a.worker
	if a.state != actorAlive || a.broken || w == nil || w.remote != nil || w.pw == nil || !w.pipelines || w.dead ||
		a.concurrency() != 1 || len(a.running) != 1 || w.task != a.running[0] {
		return nil
	}
	var out []assignment
	for len(a.queue) > 0 && len(w.next) < maxPipelineDepth {
		t := a.queue[0]
		if t.lc.State != stateScheduled || t.lc.Cancelled {
			break
		}
		last := w.task
		if n := len(w.next); n > 0 {
			last = w.next[n-1]
		}
		if !inCall && !last.sent.Load() {
			break // the Execs must reach the worker in the calls' order
		}
		if last.lc.MayRetryInPlace() {
			// If it fails it runs again before the calls behind it, which
			// the worker would already hold: nothing waits behind it.
			break
		}
		a.queue = a.queue[1:]
		t.worker = w
		t.sent.Store(false)
		w.next = append(w.next, t)
		h.recordAttempt(t, stateScheduled, fmt.Sprintf("queued behind call %s on worker process %d", last.id, w.pid), t.lc.Attempt)
		out = append(out, assignment{t: t, w: w})
		inCall = true
	}
	return out
}

// behindLocked counts a's calls waiting in its worker's queue.
func (a *actor) behindLocked() int {
	n := 0
	if w := a.worker; w != nil {
		for _, t := range w.next {
			if t.actor == a {
				n++
			}
		}
	}
	return n
}

// unqueueBehindLocked takes the calls of a waiting in its worker's queue
// back to the head of the actor's queue, in order, unstarted (the worker
// is gone or the actor is ending); cancelled ones are dropped.
func (ac *actorTable) unqueueBehindLocked(a *actor, w *workerProc) {
	var back []*task
	for _, t := range w.next {
		if t.actor == a && t.kind == abi.KindActorCall {
			t.worker = nil
			t.sent.Store(false)
			if !t.lc.State.Terminal() {
				back = append(back, t)
				ac.o.recordAttempt(t, stateScheduled, fmt.Sprintf("back in the actor's queue, never started: its worker process %d is gone", w.pid), t.lc.Attempt)
			}
		}
	}
	w.next = nil
	a.queue = append(back, a.queue...)
}

// concurrency is how many calls of a may run at once now: its
// max_concurrency on a worker of this host; one on another host's (the
// peer protocol runs one call of an actor at a time).
func (a *actor) concurrency() int {
	if a.worker != nil && a.worker.remote != nil {
		return 1
	}
	return a.maxConc
}

// endCallLocked removes a call from the calls a runs; false if it was not
// running.
func (a *actor) endCallLocked(t *task) bool {
	i := slices.Index(a.running, t)
	if i < 0 {
		return false
	}
	a.running = slices.Delete(a.running, i, i+1)
	return true
}

// actorCreated is called when a creation task finished: the worker is the
// actor's from now on.
func (ac *actorTable) actorCreatedLocked(a *actor, w *workerProc) []assignment {
	h := ac.o
	a.state, a.worker, a.cause = actorAlive, w, ""
	w.actor = a
	if a.holdCPU {
		// The creation task gave its CPUs back as it ended; an actor that
		// asked for CPUs holds them while it lives (otherwise 0, as in Ray).
		h.sched.AcquireOn(a.create.lc.Node, a.create.req)
		a.cpuHeld = true
	}
	return h.acts.dispatchActorLocked(a)
}

// actorFailedLocked ends an actor whose constructor failed or that cannot
// restart: every queued call fails with actor_died.
func (ac *actorTable) actorDeadLocked(a *actor, cause string) []*task {
	h := ac.o
	a.state, a.cause = actorDead, cause
	ac.dropRefs(a)
	ac.undetachLocked(a)
	if a.name != "" && h.actorNames[a.key()] == a.id {
		delete(h.actorNames, a.key())
	}
	if a.worker != nil {
		// (Its worker is gone or going: actorWorkerDied took back the
		// calls that waited there.)
		ac.unqueueBehindLocked(a, a.worker)
		a.worker.actor = nil
		a.worker = nil
	}
	if a.holdCPU && a.cpuHeld {
		h.sched.ReleaseOn(a.create.lc.Node, a.create.req)
		a.cpuHeld = false
	}
	doomed := a.queue
	a.queue = nil
	return doomed
}

func (ac *actorTable) failActorCalls(a *actor, calls []*task) {
	h := ac.o
	for _, t := range calls {
		h.fail(t, h.taskError(t, abi.ErrorActorDied, fmt.Sprintf("actor %s (%s) died: %s", a.id, a.class, a.cause)))
	}
}

// actorWorkerDied handles the death of an actor's worker: the running call
// fails (or waits to be retried), and the actor restarts if it may.
func (ac *actorTable) actorWorkerDied(a *actor, w *workerProc, exitErr error) {
	h := ac.o
	cause := fmt.Sprintf("its worker process %d died", w.pid)
	if w.remote != nil {
		cause = fmt.Sprintf("its host %s failed, left, or lost its worker", w.remote.node)
	}
	if exitErr != nil {
		cause += " (" + exitErr.Error() + ")"
	}
	h.mu.Lock()
	if a.worker != w {
		h.mu.Unlock()
		return
	}
	// The calls that waited in the worker's queue never started: back to
	// the head of the queue, behind the running call (retried below).
	ac.unqueueBehindLocked(a, w)
	a.worker, w.actor, a.broken = nil, nil, false
	if a.holdCPU && a.cpuHeld {
		h.sched.ReleaseOn(a.create.lc.Node, a.create.req)
		a.cpuHeld = false
	}
	calls := a.running
	a.running = nil
	w.task = nil
	for _, t := range w.calls {
		w.endCallLocked(t)
	}
	restart := !a.killed && (a.maxRestarts < 0 || a.restarts < int(a.maxRestarts))
	// Every call it ran fails or is retried; retried calls go back to the
	// head of the queue in the order they started.
	var lost []*task
	for i := len(calls) - 1; i >= 0; i-- {
		t := calls[i]
		if restart && !t.lc.Cancelled && (a.maxTaskRetries < 0 || int(t.lc.Attempt) < int(a.maxTaskRetries)) {
			t.worker = nil
			run(h.stepLocked(t, lifecycle.ActorRetry{Why: cause})) // back at the head of the queue; only a log is left
			continue
		}
		lost = append(lost, t)
	}
	slices.Reverse(lost)
	var doomed []*task
	var restartCreate []func()
	if restart {
		a.restarts++
		a.state, a.cause = actorRestarting, cause
		ac.dropRefs(a) // the new instance starts with no state
		c := a.create
		c.worker, c.stderr = nil, nil
		restartCreate = h.stepLocked(c, lifecycle.Restart{Why: cause})
	} else {
		if a.killed {
			cause = "it was killed"
			if a.killCause != "" {
				cause = a.killCause
			}
		}
		doomed = h.acts.actorDeadLocked(a, cause)
	}
	starts := h.disp.dispatchLocked()
	h.mu.Unlock()
	for _, t := range lost {
		h.disp.finishWorker(w, t, h.taskError(t, abi.ErrorActorDied, fmt.Sprintf("actor %s (%s) died while running the call: %s", a.id, a.class, cause)), nil)
	}
	h.acts.failActorCalls(a, doomed)
	h.disp.start(starts)
	if restart {
		h.log.Info("restarting an actor", "actor_id", a.id, "restart", a.restarts, "cause", cause)
		run(restartCreate) // queues the creation again
	}
}

// killActor ends an actor; with noRestart it stays dead.
func (ac *actorTable) killActor(id ids.TaskID, noRestart bool) error {
	h := ac.o
	h.mu.Lock()
	a := h.actors[id]
	if a == nil {
		h.mu.Unlock()
		return fmt.Errorf("%w: actor %s", ErrTaskNotFound, id)
	}
	if noRestart {
		a.killed = true
	}
	w := a.worker
	var doomed []*task
	if w == nil && a.state != actorDead && noRestart {
		// Not running yet (creating or restarting): end it where it stands.
		cause := "it was killed"
		if a.killCause != "" {
			cause = a.killCause
		}
		doomed = h.acts.actorDeadLocked(a, cause)
	}
	h.mu.Unlock()
	if w != nil {
		w.kill()
	}
	h.acts.failActorCalls(a, doomed)
	if len(doomed) > 0 || (w == nil && noRestart) {
		h.cancelTask(a.create, true, false)
	}
	return nil
}

// lookupActor finds a named actor.
func (ac *actorTable) lookupActor(name, namespace string) (*actor, error) {
	h := ac.o
	h.mu.Lock()
	defer h.mu.Unlock()
	id, ok := h.actorNames[namespace+"/"+name]
	if !ok {
		return nil, fmt.Errorf("%w: no actor named %q in namespace %q", ErrTaskNotFound, name, namespace)
	}
	return h.actors[id], nil
}

// ActorInfo describes an actor for listings.
type ActorInfo struct {
	ID, Class, Name, Namespace, State string
	Host                              string // where it runs ("" while it has no worker)
	Calls, Restarts, Queued           int
	WorkerPID                         int
}

func (ac *actorTable) listActors() []ActorInfo {
	h := ac.o
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]ActorInfo, 0, len(h.actors))
	for _, a := range h.actors {
		info := ActorInfo{ID: a.id.String(), Class: a.class, Name: a.name, Namespace: a.namespace, State: a.state.String(),
			Calls: a.calls, Restarts: a.restarts, Queued: len(a.queue) + a.behindLocked()}
		if a.worker != nil {
			info.WorkerPID = a.worker.pid
			info.Host = h.cfg.ID
			if a.worker.remote != nil {
				info.Host = a.worker.remote.node
			}
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(x, y ActorInfo) int { return strings.Compare(x.ID, y.ID) })
	return out
}
