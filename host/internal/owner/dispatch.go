package owner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rayhost/rayhost/host/internal/lifecycle"
	"github.com/rayhost/rayhost/host/internal/workerpool"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/ipc"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// Dispatch: tasks whose resources are reserved meet idle workers (or
// peers), their Exec frames are sent, and attempts that could not start go
// back to fetch their arguments. Guarded by Host.mu where named *Locked.

// assignment is a task paired with the worker that will run it.
type assignment struct {
	t *task
	w *workerProc
	// unqueue: ask w for t back instead (pipeline.go, stealLocked).
	unqueue bool
}

// dispatchLocked moves tasks whose resources are free to idle workers and
// starts workers for the rest. The Exec frames are sent by start, after the
// lock is released.
func (dp *dispatcher) dispatchLocked() []assignment {
	h := dp.o
	var remote []assignment
	for {
		it, ok := h.sched.Next()
		if !ok {
			break
		}
		t := it.Value
		if it.Node != "" {
			// Another host runs it: it needs no worker here.
			w := h.rem.newRemoteWorker(it.Node)
			t.worker, w.task = w, t
			h.stepLocked(t, lifecycle.Reserved{Node: it.Node}) // Exec: the assignment
			remote = append(remote, assignment{t: t, w: w})
			continue
		}
		h.stepLocked(t, lifecycle.Reserved{}) // waits for a worker
	}
	out := remote
	for len(h.needWorker) > 0 {
		t := h.needWorker[0]
		if !h.disp.memoryFitsLocked(t) {
			break // waits, in order, until running tasks free guest memory
		}
		// A worker that ran a task of the module has it compiled and an
		// instance ready (a module's first task goes to the worker that
		// described it); one compiling it ahead is next best.
		var score func(*workerpool.Worker) int
		if t.mod != nil {
			digest := t.mod.Digest
			score = func(pw *workerpool.Worker) int {
				if w := procOf(pw); w != nil {
					return w.moduleScoreLocked(digest)
				}
				return scoreNone
			}
		}
		pw, ok := h.pool.TakeBest(score)
		if !ok {
			break
		}
		h.needWorker = h.needWorker[1:]
		w := procOf(pw)
		if t.mod != nil {
			noteModule(&w.ran, t.mod.Digest)
		}
		t.worker = w
		w.task = t
		t.sent.Store(false)
		t.ranAt = h.clock.Now()
		w.memHeld = h.disp.memoryLimitOf(t)
		h.stepLocked(t, lifecycle.WorkerAssigned{}) // Exec: the assignment
		out = append(out, assignment{t: t, w: w})
	}
	waiting := len(h.needWorker)
	if waiting > 0 && !h.disp.memoryFitsLocked(h.needWorker[0]) {
		waiting = 0 // waiting for memory, not for a process
	}
	h.pool.Need(waiting)
	// Keep one spare worker warm, so the next task (or a driver, which holds
	// no CPU) does not wait for a process to start. The pool's reaper stops
	// spares that stay idle.
	if !h.closed {
		h.pool.Spare()
	}
	h.disp.detectStarvationLocked()
	h.disp.detectMemoryStarvationLocked()
	out = append(out, h.disp.pipelineLocked()...)
	return append(out, h.disp.stealLocked()...)
}

// memoryFitsLocked reports whether t's guest memory limit fits in what
// GuestMemoryBudget leaves beside the tasks and actors running here.
func (dp *dispatcher) memoryFitsLocked(t *task) bool {
	h := dp.o
	if h.cfg.GuestMemoryBudget == 0 {
		return true
	}
	return h.disp.memoryHeldLocked()+h.disp.memoryLimitOf(t) <= h.cfg.GuestMemoryBudget
}

func (dp *dispatcher) memoryHeldLocked() int64 {
	h := dp.o
	var held int64
	for pw := range h.pool.Workers() {
		if w := procOf(pw); w != nil && !w.dead {
			held += w.memHeld
		}
	}
	return held
}

// detectMemoryStarvationLocked fails the task at the head of the queue
// when its memory can never come: every task holding guest memory is
// blocked waiting for other tasks (a parent waiting for a child that does
// not fit beside it).
func (dp *dispatcher) detectMemoryStarvationLocked() {
	h := dp.o
	if len(h.needWorker) == 0 || h.pool.Stats().Idle == 0 || h.disp.memoryFitsLocked(h.needWorker[0]) {
		return
	}
	for pw := range h.pool.Workers() {
		w := procOf(pw)
		if w == nil || w.dead || w.memHeld == 0 {
			continue
		}
		if t := w.task; t == nil || t.lc.Holding || t.lc.State != stateRunning {
			return // running (or an idle actor): its memory may come back
		}
	}
	t := h.needWorker[0]
	h.needWorker = h.needWorker[1:]
	t.memStarved = true
	h.starved = append(h.starved, t)
}

// detectStarvationLocked fails the tasks waiting for a worker when none can
// ever come: every worker process (at MaxWorkers) runs a task that is
// blocked waiting for other tasks. Without it, a recursion that blocks at
// every level (a nesting bomb) would hang the host's tasks for ever.
func (dp *dispatcher) detectStarvationLocked() {
	h := dp.o
	if len(h.needWorker) == 0 {
		return
	}
	if st := h.pool.Stats(); st.Idle > 0 || st.Starting > 0 || st.Live < h.cfg.MaxWorkers {
		return
	}
	for pw := range h.pool.Workers() {
		w := procOf(pw)
		if w == nil {
			return // its Ready is being handled: it is about to run
		}
		if (w.actor != nil || w.foreign != nil) && w.task == nil {
			continue // an idle actor's worker runs nothing else
		}
		if t := w.task; t == nil || t.lc.Holding || t.lc.State != stateRunning {
			return // this one will finish or is about to run
		}
	}
	h.starved = append(h.starved, h.needWorker...)
}

// expire ends an attempt that ran past its timeout by killing its worker
// (a guest in a loop cannot be interrupted any other way).
func (dp *dispatcher) expire(t *task, attempt uint32, limit time.Duration) {
	h := dp.o
	h.mu.Lock()
	var later []func()
	if t.worker != nil {
		later = h.stepLocked(t, lifecycle.Timeout{Attempt: attempt, Limit: limit})
	}
	h.mu.Unlock()
	run(later)
}

func (dp *dispatcher) timeoutOf(t *task) time.Duration {
	h := dp.o
	if t.foreign != nil {
		return 0 // its owner times the attempt
	}
	if t.limits.TimeoutNs > 0 {
		return time.Duration(t.limits.TimeoutNs)
	}
	if h.cfg.TaskTimeout == 0 && h.cfg.MaxTaskTimeout > 0 {
		return h.cfg.MaxTaskTimeout // with a maximum, no task runs for ever
	}
	return h.cfg.TaskTimeout
}

// placement says where t may run: drivers and describes run here; calls
// and actors where their strategy allows, preferring the hosts that hold
// their largest arguments. An actor stays where it was created.
func (dp *dispatcher) placement(t *task) scheduler.Placement {
	h := dp.o
	if (t.kind != abi.KindCall && t.kind != abi.KindActorCreate) || t.foreign != nil || h.cluster == nil {
		return scheduler.Placement{NodeID: h.cfg.ID, Depth: t.depth}
	}
	pl := t.strategy
	pl.Depth = t.depth
	for _, a := range t.args {
		if !a.IsRef {
			continue
		}
		hd, err := h.objs.Holding(context.Background(), a.Ref.ID)
		if err != nil || hd.InMemory || hd.Size <= int64(h.cfg.InlineObjectLimit) {
			continue
		}
		if pl.Locality == nil {
			pl.Locality = map[string]int64{}
		}
		if hd.Local {
			pl.Locality[h.cfg.ID] += hd.Size
		}
		for _, x := range hd.Holders {
			if name := h.rem.nodeName(x); name != "" {
				pl.Locality[name] += hd.Size
			}
		}
	}
	return pl
}

// warnInfeasible tells the operator and the task's driver that t waits for
// a host that fits, as Ray warns of infeasible resource requests.
func (dp *dispatcher) warnInfeasible(t *task, why string) {
	h := dp.o
	h.log.Warn("a task waits for a host that can run it", "task_id", t.id, "function", t.displayName(), "why", why)
	if t.job != nil {
		t.job.log(t, h.cfg.ID, 2, []byte(fmt.Sprintf("rayhost: task %s (%s) is infeasible: %s; it waits until a host that fits joins the cluster\n", t.id, t.displayName(), why)))
	}
}

// grantsNote describes a task's grants for its events.
func grantsNote(g abi.Grants) string {
	if g.Empty() {
		return ""
	}
	var b strings.Builder
	b.WriteString("grants:")
	for _, m := range g.Mounts {
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		fmt.Fprintf(&b, " dir %s at %s (%s);", m.Host, m.Guest, mode)
	}
	for _, kv := range g.Env {
		fmt.Fprintf(&b, " env %s;", kv.Name)
	}
	return b.String()
}

// start sends each assignment's Exec to its worker, and fails the tasks
// found starved.
func (dp *dispatcher) start(as []assignment) {
	h := dp.o
	// A worker sent several tasks (its pipeline) gets their Execs in one
	// write: each but its last is buffered, and the last flushes them.
	var last map[*workerProc]int
	if len(as) > 1 {
		last = make(map[*workerProc]int, len(as))
		for i, a := range as {
			if !a.unqueue && a.w.pw != nil {
				last[a.w] = i
			}
		}
	}
	var written []assignment
	for i, a := range as {
		if a.unqueue {
			a.w.pw.Unqueue(a.t.id)
			continue
		}
		j, ok := last[a.w]
		flush := !ok || j == i
		var away *argsAwayError
		if hook := beforeExec.Load(); hook != nil {
			(*hook)(a.t)
		}
		err := h.disp.exec(a.t, a.w, flush)
		if err == nil {
			written = append(written, a)
		}
		switch {
		case errors.As(err, &away):
			h.disp.unstart(a.t, a.w, false, "fetching its arguments from other hosts") // then fetched and queued again
		case errors.Is(err, errWorkerGone):
			// The worker died under us: its death, seen by serveWorker,
			// decides (a retry, an actor's restart, or a failure).
			a.w.kill()
		case err != nil && a.t.foreign != nil:
			// Run for another host: the outcome goes to the owner.
			h.fgn.foreignDone(a.w, a.t, &ipc.Done{Task: a.t.id, Trap: err.Error(), Kind: abi.ErrorHost})
		case err != nil:
			h.disp.finishWorker(a.w, a.t, h.taskError(a.t, abi.ErrorHost, err.Error()), nil)
		}
	}
	h.mu.Lock()
	queued := false
	var actors []*actor
	for _, a := range written {
		// Only if the task is still w's: a write buffered for a worker
		// that died meanwhile succeeds, and its task may already be
		// another worker's, whose Exec is not written yet.
		if a.t.worker == a.w {
			a.t.sent.Store(true)
			queued = queued || a.t.queuedLocked()
			if ac := a.t.actor; a.t.kind == abi.KindActorCall && ac != nil && len(ac.queue) > 0 && !slices.Contains(actors, ac) {
				actors = append(actors, ac)
			}
		}
	}
	var steals []assignment
	if queued {
		// A queued task may be taken back only once it is sent: a worker
		// that went idle meanwhile found nothing to take back, and no
		// other event may come to look again.
		steals = h.disp.stealLocked()
	}
	for _, ac := range actors {
		// An actor's next calls may follow the ones now written
		// (pipelineActorLocked): no other event may come to send them.
		steals = append(steals, h.acts.pipelineActorLocked(ac, false)...)
	}
	starved := h.starved
	h.starved = nil
	h.mu.Unlock()
	if len(steals) > 0 {
		h.disp.start(steals)
	}
	for _, t := range starved {
		if t.memStarved {
			h.fail(t, h.taskError(t, abi.ErrorLimit, fmt.Sprintf(
				"the task's memory limit of %d MiB does not fit in the guest memory budget of %d MiB beside tasks blocked waiting for other tasks (rayhost start --guest-memory-budget-mib)",
				h.disp.memoryLimitOf(t)>>20, h.cfg.GuestMemoryBudget>>20)))
			continue
		}
		h.fail(t, h.taskError(t, abi.ErrorLimit, fmt.Sprintf(
			"no worker process can run the task: all %d (MaxWorkers) run tasks blocked waiting for other tasks", h.cfg.MaxWorkers)))
	}
}

// beforeExec, when set (tests), runs before each Exec is written: a test
// widens the window between a dispatch and its write with it.
var beforeExec atomic.Pointer[func(t *task)]

// beforeDone, when set (tests), runs before a worker's Done frame is
// handled, on the goroutine that reads that worker: a test holds the
// frames that follow it with it.
var beforeDone atomic.Pointer[func(task ids.TaskID)]

// exec sends t to w; unless flush, its Exec waits in w's buffer for the
// next frame written to w (or at most ipc's lazy flush delay).
func (dp *dispatcher) exec(t *task, w *workerProc, flush bool) error {
	h := dp.o
	if w.remote != nil {
		return h.rem.execRemote(t, w)
	}
	owner := h.addr
	if t.foreign != nil {
		owner = t.foreign.owner
	}
	if t.kind != abi.KindActorCall {
		// Reading an argument must not block here (start runs on paths
		// that others wait for) nor hold a worker and resources while it
		// travels: fetch first, then queue again.
		if away := h.disp.argsAway(t); len(away) > 0 {
			return &argsAwayError{ids: away}
		}
	}
	inv := abi.Invocation{Kind: t.kind, Task: t.id, Attempt: t.lc.Attempt, Owner: owner, Function: t.function, Args: make([]abi.Value, len(t.args))}
	for i, a := range t.args {
		if !a.IsRef {
			inv.Args[i] = a.Value
			continue
		}
		v, err := h.objs.Value(context.Background(), a.Ref.ID)
		if err != nil {
			return fmt.Errorf("reading argument %d: %w", i+1, err)
		}
		inv.Args[i] = v
	}
	// The guest may keep the refs inside its arguments (an actor, in its
	// state): its holder holds them too (for another host's task, this
	// host borrows them until it ends). Actor handles are counted for
	// this host's own tasks.
	reader := attemptHolder(t, t.lc.Attempt)
	if t.foreign != nil {
		reader = t.foreign.holder
	}
	h.refs.delivered(reader, inv.Args)
	if t.foreign == nil {
		h.acts.deliveredArgs(t, reader, inv.Args)
	}
	inv.Args = forGuests(t.mod, inv.Args)
	ex := ipc.Exec{Task: t.id, ModulePath: h.mods.Path(t.mod.Digest), Function: t.function, Invocation: inv.Encode(nil),
		MemoryPages: h.cfg.memoryPages(), MaxResultBytes: uint64(h.cfg.MaxResultBytes),
		MaxArgBytes: uint64(h.cfg.MaxArgBytes), MaxLogBytes: uint64(h.cfg.MaxLogBytes), Grants: t.grants}
	if t.limits.MemoryPages > 0 {
		ex.MemoryPages = t.limits.MemoryPages
	}
	if t.actor != nil {
		// An actor's calls must reach the instance its creation made: same
		// memory limit, and the worker keeps that instance by actor ID.
		inv.Actor, ex.Actor, ex.ActorCreate = t.actor.id, t.actor.id, t.kind == abi.KindActorCreate
		ex.Invocation = inv.Encode(nil)
		if ex.ActorCreate && t.actor.maxConc > 1 {
			ex.MaxConcurrency = uint32(t.actor.maxConc)
		}
		if c := t.actor.create; c.limits.MemoryPages > 0 {
			ex.MemoryPages = c.limits.MemoryPages
		}
	} else if f := t.foreign; f != nil && !f.actor.IsZero() {
		inv.Actor, ex.Actor, ex.ActorCreate = f.actor, f.actor, t.kind == abi.KindActorCreate
		ex.Invocation = inv.Encode(nil)
	}
	if err := w.exec(&ex, flush); err != nil {
		return fmt.Errorf("%w: %v", errWorkerGone, err)
	}
	return nil // start marks it sent
}

// errWorkerGone: the worker could not be sent its task.
var errWorkerGone = errors.New("worker gone")

// argsAwayError: a task placed here has arguments whose bytes are on other
// hosts only.
type argsAwayError struct{ ids []ids.ObjectID }

func (e *argsAwayError) Error() string {
	return fmt.Sprintf("%d arguments are on other hosts", len(e.ids))
}

// argLost is the failure of a task whose argument id is gone for good.
func (dp *dispatcher) argLost(t *task, id ids.ObjectID, err error) *abi.TaskError {
	h := dp.o
	kind := abi.ErrorObjectLost
	if errors.Is(err, ErrOwnerDied) {
		kind = abi.ErrorOwnerDied
	}
	return &abi.TaskError{Kind: abi.ErrorDependency, TaskID: t.id.String(), Function: t.displayName(), Host: h.cfg.ID,
		Message: "an argument is lost", Cause: &abi.TaskError{Kind: kind, TaskID: id.Task().String(), Message: err.Error()}}
}

// argsAway lists t's ObjectRef arguments whose bytes are not on this host.
func (dp *dispatcher) argsAway(t *task) []ids.ObjectID {
	h := dp.o
	var away []ids.ObjectID
	for _, a := range t.args {
		if a.IsRef && !slices.Contains(away, a.Ref.ID) && !h.objs.Here(context.Background(), a.Ref.ID) {
			away = append(away, a.Ref.ID)
		}
	}
	return away
}

// unstart sends back a task whose attempt did not start (its arguments are
// elsewhere, or the peer it was placed on refused it): the worker and the
// resources are given back and the task waits in pending_args again. It
// costs no retry. It reports false if the task moved on meanwhile, or was
// cancelled (it then ends as cancelled).
func (dp *dispatcher) unstart(t *task, w *workerProc, refused bool, why string) {
	h := dp.o
	h.mu.Lock()
	starts, later := dp.unstartLocked(t, w, refused, why)
	h.mu.Unlock()
	h.disp.start(starts)
	run(later)
}

// unstartLocked is unstart under Owner.mu; the caller starts what it
// returns, then runs later.
func (dp *dispatcher) unstartLocked(t *task, w *workerProc, refused bool, why string) ([]assignment, []func()) {
	h := dp.o
	if t.lc.State != stateRunning && (t.lc.State != stateScheduled || !t.queuedLocked()) || t.worker != w {
		return nil, nil
	}
	if w.endTaskLocked(t) && !w.promoteLocked() { // a task queued behind t runs now
		if w.actor == nil && w.foreign == nil {
			w.memHeld = 0
			w.idleLocked()
		}
	}
	t.worker = nil
	later := h.stepLocked(t, lifecycle.Unstarted{Refused: refused, Why: why}) // FetchArgs, or the cancel's end
	return h.disp.dispatchLocked(), later
}

// goTracked runs fn in a goroutine Close waits for, unless the host is
// closing.
func (dp *dispatcher) goTracked(fn func()) {
	h := dp.o
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		fn()
	}()
}

// fetchArgs brings t's arguments here, then queues t again. The scheduler
// may now place it anywhere, but here its arguments are local.
func (dp *dispatcher) fetchArgs(t *task, away []ids.ObjectID) bool {
	h := dp.o
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := context.AfterFunc(h.serving, cancel)
	defer stop()
	go func() {
		select {
		case <-t.cancelCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	for _, id := range away {
		if _, _, err := h.objs.EnsureLocal(ctx, id); err != nil {
			if ctx.Err() != nil {
				select {
				case <-t.cancelCh:
					h.fail(t, h.taskError(t, abi.ErrorCancelled, "the task was cancelled"))
				default: // the host is closing
				}
				return false
			}
			h.fail(t, h.disp.argLost(t, id, err))
			return false
		}
	}
	return true
}

// refetch brings the arguments of a task sent back to pending_args here
// (in the background), then queues it again.
func (dp *dispatcher) refetch(t *task) {
	h := dp.o
	away := h.disp.argsAway(t)
	if len(away) == 0 {
		h.enqueue(t)
		return
	}
	h.disp.goTracked(func() {
		if h.disp.fetchArgs(t, away) {
			h.enqueue(t)
		}
	})
}
