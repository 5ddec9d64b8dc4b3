package owner

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/rayhost/rayhost/host/internal/lifecycle"
	"github.com/rayhost/rayhost/host/internal/peerwire"
	"github.com/rayhost/rayhost/host/internal/workerpool"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/ipc"
)

// workerProc is the owner's side of one worker: a process of the worker
// pool (host/internal/workerpool), or another host running one task for
// this one. The pool keeps the processes (starting, idle, reaped, dead);
// workerProc keeps what they run.
type workerProc struct {
	h *Owner
	// pw is the pool's worker (its Value is this workerProc); nil for a
	// remote one.
	pw  *workerpool.Worker
	pid int

	// remote is set when the "worker" is another host running one task for
	// this one; pw is then nil.
	remote *remoteLink
	// foreign is set on a worker bound to an actor another host owns.
	foreign *foreign
	// pipelines: the worker said in its Ready that it queues tasks sent
	// while one runs, and gives them back (ipc.ReadyPipeline).
	pipelines bool

	// Guarded by Owner.mu.
	task *task
	// next are the tasks queued behind task on this worker, in the order
	// they run (pipeline.go): sent, not started; the first runs when task
	// ends.
	next []*task
	// calls are the running calls of a concurrent actor (task is then
	// nil): its worker runs several at once.
	calls map[ids.TaskID]*task
	actor *actor // the actor this worker belongs to, if any
	// ran lists the digests of the modules the worker ran a task of
	// (describe included), and loaded those it was asked to compile ahead
	// (ipc.Load), most recent last, each as many as a worker keeps
	// compiled: dispatch prefers a worker that has a task's module, then
	// one that is compiling it (moduleScoreLocked).
	ran, loaded []string
	dead        bool
	// memHeld is the guest memory limit of what the worker runs (a task,
	// or the actor it keeps), counted against GuestMemoryBudget.
	memHeld int64
}

// procOf is the owner's side of a pool worker. Ready sets it before the
// pool reads the worker's frames or makes it idle, so it is safe to read
// without Owner.mu.
func procOf(w *workerpool.Worker) *workerProc {
	wp, _ := w.Value.(*workerProc)
	return wp
}

// The workerRole is the pool's Handler.
var _ workerpool.Handler = (*workerRole)(nil)

// newPool makes the worker pool (no worker starts yet).
func (wp *workerRole) newPool() (*workerpool.Pool, error) {
	h := wp.o
	cfg := workerpool.DefaultConfig(h.launcher, wp)
	cfg.Options = wp.workerOptions
	cfg.Warm, cfg.Max = h.cfg.Workers, h.cfg.MaxWorkers
	cfg.Clock, cfg.Logger = h.cfg.WorkerClock, h.log // nil: the system clock
	p, err := workerpool.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return p, nil
}

// Ready (workerpool.Handler): a new worker joins the idle list and takes
// queued work.
func (wp *workerRole) Ready(pw *workerpool.Worker, hello []byte) {
	h := wp.o
	wp.noteConfinement(hello)
	w := &workerProc{h: h, pw: pw, pid: pw.PID(), pipelines: ipc.ReadyHas(hello, ipc.ReadyPipeline)}
	h.mu.Lock()
	pw.Value = w
	if h.closed {
		// Not made idle: it runs nothing, and the pool's Close stops it.
		// (Killed, it would be replaced while the pool is open.)
		h.mu.Unlock()
		return
	}
	h.pool.Idle(pw)
	starts := h.disp.dispatchLocked()
	h.mu.Unlock()
	for _, d := range h.mods.Warm() {
		w.load(d, h.mods.Path(d))
	}
	h.disp.start(starts)
}

// StartFailed (workerpool.Handler): tasks waiting for a worker fail when
// no worker exists or is starting: otherwise they would wait for ever.
func (wp *workerRole) StartFailed(cause error) {
	h := wp.o
	h.mu.Lock()
	if st := h.pool.Stats(); st.Live > 0 || st.Starting > 0 {
		h.mu.Unlock()
		return
	}
	waiting := h.needWorker
	h.mu.Unlock()
	for _, t := range waiting {
		h.fail(t, h.taskError(t, abi.ErrorHost, "no worker process could start: "+cause.Error()))
	}
}

// Frame (workerpool.Handler): a frame from a worker; an error is a
// protocol error, and the pool kills the worker.
func (wp *workerRole) Frame(pw *workerpool.Worker, typ ipc.Type, payload []byte) error {
	return wp.o.gops.handleFrame(procOf(pw), typ, payload)
}

// Exited (workerpool.Handler): a worker's process has exited (the pool has
// started its replacement if the warm pool needs one).
func (wp *workerRole) Exited(pw *workerpool.Worker, err error) {
	if w := procOf(pw); w != nil {
		wp.workerDied(w, err)
	}
}

// workerModules is how many compiled modules a worker keeps
// (worker.DefaultConfig's MaxModules).
const workerModules = 16

// noteModule puts digest last in list (a worker's ran or loaded), which
// keeps at most workerModules.
func noteModule(list *[]string, digest string) {
	if i := slices.Index(*list, digest); i >= 0 {
		*list = slices.Delete(*list, i, i+1)
	} else if len(*list) >= workerModules {
		*list = slices.Delete(*list, 0, 1)
	}
	*list = append(*list, digest)
}

// Scores of a worker for a task of a module (moduleScoreLocked).
const (
	scoreNone    = iota // the task's first there compiles the module
	scoreLoading        // compiling it ahead (or has it): the task waits for that compile, not another
	scoreRan            // ran a task of it: compiled, and an instance ready
)

// moduleScoreLocked rates w for a task of the module with digest.
func (w *workerProc) moduleScoreLocked(digest string) int {
	switch {
	case slices.Contains(w.ran, digest):
		return scoreRan
	case slices.Contains(w.loaded, digest):
		return scoreLoading
	}
	return scoreNone
}

// load asks the worker to compile the module with digest, at path, ahead
// of its tasks.
func (w *workerProc) load(digest, path string) {
	w.h.mu.Lock()
	noteModule(&w.loaded, digest)
	w.h.mu.Unlock()
	w.pw.Load(path, w.h.cfg.memoryPages())
}

// idleLocked puts a local worker that is done with its task back on the
// pool's idle list, unless it died.
func (w *workerProc) idleLocked() {
	if w.pw != nil && !w.dead {
		w.h.pool.Idle(w.pw)
	}
}

func (w *workerProc) kill() {
	if l := w.remote; l != nil {
		// Ask the executor to kill its worker; if it cannot be reached (a
		// partition), give up on the attempt shortly after.
		_ = l.send(frameKill, nil)
		time.AfterFunc(2*time.Second, l.cancel)
		return
	}
	w.pw.Kill()
}

func (w *workerProc) exec(m *ipc.Exec, flush bool) error {
	if !flush {
		return w.pw.QueueExec(m)
	}
	return w.pw.Exec(m)
}

func (w *workerProc) cancel(t *task) {
	if w.remote != nil {
		m := ipc.Cancel{Task: t.id}
		_ = w.remote.send(ipc.TypeCancel, m.Encode(nil))
		return
	}
	w.pw.Cancel(t.id)
}

func (w *workerProc) reply(seq uint64, code int64, payload []byte) {
	if w.remote != nil {
		m := ipc.Reply{Seq: seq, Code: code, Payload: payload}
		_ = w.remote.send(ipc.TypeReply, m.Encode(nil))
		return
	}
	w.pw.Reply(seq, code, payload)
}

// replyTail answers seq with payload followed by tail (abi's EncodeSplit):
// a local worker gets tail written from where it is.
func (w *workerProc) replyTail(seq uint64, code int64, payload, tail []byte) {
	if w.remote != nil || tail == nil {
		w.reply(seq, code, append(payload, tail...))
		return
	}
	w.pw.ReplyTail(seq, code, payload, tail)
}

func (gp *guestOps) handleFrame(w *workerProc, typ ipc.Type, payload []byte) error {
	h := gp.o
	switch typ {
	case ipc.TypeCall:
		var c ipc.Call
		if err := c.Decode(payload); err != nil {
			return err
		}
		t := h.wrk.runningTask(w, c.Task)
		if t != nil {
			h.mu.Lock()
			if t.lc.State.Terminal() {
				// It ended here before it ran: cancelled while it waited
				// behind another on this worker, which started it as the
				// cancel came. Nothing it asks for is served (no child,
				// no put under an attempt whose holds are released); its
				// Done, ignored, frees the worker.
				t = nil
			}
			h.mu.Unlock()
		}
		if t == nil {
			if c.Seq != 0 {
				w.reply(c.Seq, int64(abi.ErrCodeCancelled), nil)
			}
			return nil
		}
		if c.Seq != 0 && w.pw != nil {
			// A round trip may block: no task is queued behind this
			// attempt any more (the worker gave back any that was).
			h.mu.Lock()
			t.waited = t.lc.Attempt + 1
			h.mu.Unlock()
		}
		if t.foreign != nil && c.Op == abi.OpRelease {
			// The refs inside the values this host gave the guest were
			// not counted by the owner: its holds end with the attempt.
			return nil
		}
		if t.foreign != nil && !c.Op.AtRunner() {
			// The owner answers everything but Get and Wait, which are
			// served here, where the task needs the values.
			c.Payload = append([]byte(nil), c.Payload...)
			h.fgn.relayCall(t, c)
			return nil
		}
		switch c.Op {
		case opPutHeld:
			p, err := peerwire.DecodePutHeld(c.Payload)
			id := p.ID
			v := abi.Value{Codec: codecHeld, Data: append([]byte(nil), p.Held...)}
			// Only the task's own put IDs, as guestPut requires: never one of
			// its returns, which would seal its result early.
			if err == nil && id.Task() == t.id && id.IsPut() {
				h.refs.created(h.currentHolder(t), id)
				if err := h.objs.Seal(context.Background(), id, v); err != nil {
					h.log.Warn("refused a held put", "task_id", t.id, "err", err)
				}
				h.refs.sealed(id, v)
			}
		case opYieldHeld:
			h.gops.guestYield(w, t, c, abi.Value{Codec: codecHeld, Data: append([]byte(nil), c.Payload...)}, nil)
		case abi.OpSubmit:
			h.gops.guestSubmit(t, c.Payload)
		case abi.OpPut:
			h.gops.guestPut(t, c.Payload)
		case abi.OpCancel:
			h.gops.guestCancel(t, c.Payload)
		case abi.OpRelease:
			if w.remote == nil { // see above: a remote attempt's holds end with it
				h.gops.guestRelease(t, c.Payload)
			}
		case abi.OpKill:
			var req abi.KillRequest
			// Only through a counted handle (actorlife.go): an actor ID
			// alone, a forged handle, kills nothing.
			if req.Decode(c.Payload) == nil && h.acts.mayKill(t, req.Actor) {
				_ = h.acts.killActor(req.Actor, req.NoRestart)
			}
		case abi.OpGetActor:
			var req abi.GetActorRequest
			if req.Decode(c.Payload) != nil {
				w.reply(c.Seq, int64(abi.ErrCodeBadRequest), nil)
				break
			}
			a, err := h.acts.lookupActor(req.Name, req.Namespace)
			if err != nil {
				w.reply(c.Seq, int64(abi.ErrCodeNotFound), nil)
				break
			}
			h.acts.gotActor(h.currentHolder(t), a)
			info := abi.ActorInfo{Actor: a.id, Owner: h.addr, Class: a.class}
			w.reply(c.Seq, 0, info.Encode(nil))
		case abi.OpYield:
			v, err := abi.DecodeValue(c.Payload)
			h.gops.guestYield(w, t, c, v, err)
		case abi.OpGet, abi.OpWait, abi.OpNext:
			c.Payload = append([]byte(nil), c.Payload...)
			go h.gops.guestWait(w, t, c)
		default:
			if c.Seq != 0 {
				w.reply(c.Seq, int64(abi.ErrCodeUnknownOp), nil)
			}
		}
	case ipc.TypeDone:
		var d ipc.Done
		if err := d.Decode(payload); err != nil {
			return err
		}
		if hook := beforeDone.Load(); hook != nil {
			(*hook)(d.Task)
		}
		t := h.wrk.runningTask(w, d.Task)
		if t == nil {
			return nil
		}
		if t.foreign != nil {
			h.fgn.foreignDone(w, t, &d)
			return nil
		}
		te, vals := h.wrk.outcome(t, &d)
		if d.Trap != "" && t.kind == abi.KindActorCall {
			// The worker dropped the actor's instance (a trap, running out of
			// memory, an output flood): no more calls go to it, and stopping
			// the worker restarts the actor if it may, else ends it.
			h.mu.Lock()
			t.actor.broken = true
			h.mu.Unlock()
			if d.Kind == abi.ErrorWorkerDied {
				// The guest exited: the actor died running the call, whose
				// fate its death decides (retried within the actor's
				// MaxTaskRetries on the restarted actor, else ErrActorDied).
				w.kill()
				return nil
			}
			defer w.kill()
		}
		h.disp.finishWorker(w, t, te, vals)
	case ipc.TypeReturned:
		var r ipc.Cancel
		if err := r.Decode(payload); err != nil {
			return err
		}
		h.mu.Lock()
		t := w.queuedTaskLocked(r.Task)
		if t == nil {
			t = w.taskLocked(r.Task)
		}
		h.mu.Unlock()
		if t != nil {
			h.disp.returned(w, t, "given back by its worker before it started")
		}
	case ipc.TypeLog:
		var l ipc.Log
		if err := l.Decode(payload); err != nil {
			return err
		}
		if t := h.wrk.runningTask(w, l.Task); t != nil && t.foreign != nil {
			_ = t.foreign.send(ipc.TypeLog, payload)
			return nil
		}
		h.gops.guestLog(w, &l)
	default:
		return fmt.Errorf("unknown frame type %d", typ)
	}
	return nil
}

// runningTask returns the task w runs, if its ID is id.
func (wp *workerRole) runningTask(w *workerProc, id ids.TaskID) *task {
	h := wp.o
	h.mu.Lock()
	defer h.mu.Unlock()
	return w.taskLocked(id)
}

// taskLocked returns the task w runs whose ID is id.
func (w *workerProc) taskLocked(id ids.TaskID) *task {
	if t := w.task; t != nil && t.id == id {
		return t
	}
	return w.calls[id]
}

// setCallLocked adds a running call of a concurrent actor.
func (w *workerProc) setCallLocked(t *task) {
	if w.calls == nil {
		w.calls = map[ids.TaskID]*task{}
	}
	w.calls[t.id] = t
	t.callEnd = make(chan struct{})
}

// endCallLocked forgets t, a running call of a concurrent actor on w.
func (w *workerProc) endCallLocked(t *task) {
	if w.calls[t.id] == t {
		delete(w.calls, t.id)
		if t.callEnd != nil {
			// Kept closed (a new dispatch makes a new one): an op of the
			// call whose goroutine starts only now stops at once.
			close(t.callEnd)
		}
	}
}

// endTaskLocked reports whether w ran t, and forgets it.
func (w *workerProc) endTaskLocked(t *task) bool {
	if i := slices.Index(w.next, t); i >= 0 { // queued, never started
		w.next = slices.Delete(w.next, i, i+1)
		t.stealing = false
		return false
	}
	if w.task == t {
		w.task = nil
		return true
	}
	w.endCallLocked(t)
	return false
}

// outcome turns a Done frame into a failure or the task's return values.
func (wp *workerRole) outcome(t *task, d *ipc.Done) (*abi.TaskError, []abi.Value) {
	h := wp.o
	if d.Trap != "" {
		kind := d.Kind
		if kind == "" {
			kind = abi.ErrorTrap
		}
		msg := d.Trap
		h.mu.Lock()
		if len(t.stderr) > 0 {
			msg += "\nguest stderr:\n" + string(t.stderr)
			// The Go runtime says why on stderr before it exits.
			switch {
			case kind != abi.ErrorTrap:
			case bytes.Contains(t.stderr, []byte("fatal error: out of memory")):
				kind = abi.ErrorOutOfMemory
				msg = fmt.Sprintf("the guest ran out of memory (limit %d MiB)\n%s", h.disp.memoryLimitOf(t)>>20, msg)
			case bytes.Contains(t.stderr, []byte("fatal error: stack overflow")):
				msg = "the guest overflowed its stack\n" + msg
			}
		}
		h.mu.Unlock()
		return h.taskError(t, kind, msg), nil
	}
	var res abi.Result
	if err := res.Decode(d.Result); err != nil {
		return h.taskError(t, abi.ErrorHost, "undecodable result: "+err.Error()), nil
	}
	for i := range res.Values {
		// The frame buffer is reused for the next frame: the values must own
		// their bytes (they are persisted later, behind the caller's back).
		res.Values[i].Data = append([]byte(nil), res.Values[i].Data...)
	}
	return h.wrk.outcomeValues(t, d.Status, res.Values)
}

// outcomeValues turns a task's status and values into a failure or its
// return values.
func (wp *workerRole) outcomeValues(t *task, status abi.Status, values []abi.Value) (*abi.TaskError, []abi.Value) {
	h := wp.o
	res := abi.Result{Values: values}
	if status != abi.StatusOK {
		if len(res.Values) != 1 || res.Values[0].Codec != abi.CodecError {
			return h.taskError(t, abi.ErrorHost, "the guest failed without an error value"), nil
		}
		g := abi.DecodeTaskError(res.Values[0].Data)
		te := h.taskError(t, g.Kind, g.Message)
		te.Stack, te.Code, te.Cause = g.Stack, g.Code, g.Cause
		return te, nil
	}
	switch t.kind {
	case abi.KindMain:
		// A driver returns nothing; its one object says it finished.
		return nil, []abi.Value{{Codec: abi.CodecJSON, Data: []byte("null")}}
	case abi.KindDescribe:
		if len(res.Values) != 1 {
			return h.taskError(t, abi.ErrorHost, "describe returned no description"), nil
		}
		return nil, res.Values
	}
	if len(res.Values) != t.numReturns {
		return h.taskError(t, abi.ErrorHost, fmt.Sprintf("the function returned %d values, the call expects %d", len(res.Values), t.numReturns)), nil
	}
	return nil, res.Values
}

// workerDied cleans up after a worker (a pool worker, or a remote attempt)
// exits: its task fails (or, if it was cancelled with force, is
// cancelled). The pool has started a replacement if the host is below its
// warm pool size.
func (wp *workerRole) workerDied(w *workerProc, exitErr error) {
	h := wp.o
	h.mu.Lock()
	w.dead = true
	t := w.task
	a := w.actor
	closed := h.closed
	f := w.foreign
	queued := slices.Clone(w.next)
	h.mu.Unlock()
	for _, q := range queued {
		if closed {
			break
		}
		if q.kind == abi.KindActorCall {
			continue // back to its actor's queue (actorWorkerDied)
		}
		// Never started: placed again, at no retry's cost.
		h.disp.unstart(q, w, false, "its worker died before it started")
	}
	if closed {
		if f != nil {
			f.finish()
		} else if t != nil && t.foreign != nil {
			t.foreign.finish()
		}
		return
	}
	if a != nil {
		h.acts.actorWorkerDied(a, w, exitErr)
		return
	}
	if f != nil {
		// An actor's worker: end its stream; its owner decides whether it
		// restarts (and the running call is retried).
		h.mu.Lock()
		w.foreign, f.worker = nil, nil
		if f.held != nil {
			h.sched.Release(*f.held)
			f.held = nil
		}
		if t != nil {
			// Its owner decides and seals the outcome: the stream's end
			// tells it.
			_ = h.stepLocked(t, lifecycle.Fail{Err: &abi.TaskError{Kind: abi.ErrorWorkerDied, Message: "worker died"}})
		}
		f.current = nil
		starts := h.disp.dispatchLocked()
		h.mu.Unlock()
		h.disp.start(starts)
		f.finish()
		return
	}
	if t != nil && t.foreign != nil {
		msg := fmt.Sprintf("worker process %d on host %s died while running the task", w.pid, h.cfg.ID)
		if exitErr != nil {
			msg += ": " + exitErr.Error()
		}
		h.fgn.foreignDone(w, t, &ipc.Done{Task: t.id, Trap: msg, Kind: abi.ErrorWorkerDied})
		return
	}
	if t != nil && w.remote != nil {
		h.log.Warn("a remote attempt ended without an outcome", "task_id", t.id, "host", w.remote.node, "err", exitErr)
		h.disp.finishWorker(w, t, h.taskError(t, abi.ErrorWorkerDied, fmt.Sprintf("the task was running %v", exitErr)), nil)
		return
	}
	if t != nil {
		msg := fmt.Sprintf("worker process %d died while running the task", w.pid)
		if exitErr != nil {
			msg += ": " + exitErr.Error()
		}
		h.log.Warn("worker died", "pid", w.pid, "task_id", t.id, "err", exitErr)
		h.disp.finishWorker(w, t, h.taskError(t, abi.ErrorWorkerDied, msg), nil)
	}
}

func (dp *dispatcher) memoryLimitOf(t *task) int64 {
	h := dp.o
	if a := t.actor; a != nil && a.create != nil && a.create.limits.MemoryPages > 0 {
		// A method runs in its actor's instance, made with the creation's
		// limit (exec sends the same).
		return int64(a.create.limits.MemoryPages) << 16
	}
	if t.limits.MemoryPages > 0 {
		return int64(t.limits.MemoryPages) << 16
	}
	return h.cfg.TaskMemoryLimit
}
