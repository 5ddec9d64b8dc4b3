package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/rayhost/rayhost/host/internal/lifecycle"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/host/internal/peerwire"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/ipc"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// workerProc is the host's side of one worker process.
type workerProc struct {
	h    *Host
	proc Process
	conn *ipc.Conn
	pid  int

	// remote is set when the "worker" is another host running one task for
	// this one; proc and conn are then nil.
	remote *remoteLink
	// foreign is set on a worker bound to an actor another host owns.
	foreign *foreign

	// Guarded by Host.mu.
	task      *task
	actor     *actor // the actor this worker belongs to, if any
	dead      bool
	idleSince time.Time
	// memHeld is the guest memory limit of what the worker runs (a task,
	// or the actor it keeps), counted against GuestMemoryBudget.
	memHeld int64
}

// idleWorkerTTL is how long a worker beyond the warm pool may stay idle.
const idleWorkerTTL = time.Minute

// reapIdleWorkers stops workers beyond the warm pool (and its spare) that
// have been idle for idleWorkerTTL: a burst of nested tasks must not leave
// processes behind for ever.
func (h *Host) reapIdleWorkers(now time.Time) {
	h.mu.Lock()
	var stop []*workerProc
	for len(h.idle) > h.cfg.Workers+1 && now.Sub(h.idle[0].idleSince) > idleWorkerTTL {
		stop = append(stop, h.idle[0])
		h.idle = h.idle[1:]
	}
	h.mu.Unlock()
	for _, w := range stop {
		w.kill()
	}
}

// startWorkerLocked starts a worker in the background; once it is ready it
// joins the idle list and takes queued work.
func (h *Host) startWorkerLocked() {
	h.starting++
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		w, err := h.launchWorker()
		h.mu.Lock()
		h.starting--
		if err != nil {
			h.mu.Unlock()
			h.log.Error("starting a worker", "err", err)
			h.failWaitingIfNoWorkers(err)
			return
		}
		if h.closed {
			h.mu.Unlock()
			w.kill()
			return
		}
		h.workers[w] = struct{}{}
		w.idleSince = time.Now()
		h.idle = append(h.idle, w)
		starts := h.dispatchLocked()
		h.mu.Unlock()
		for _, m := range h.mods.Warm() {
			w.load(m)
		}
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.serveWorker(w)
		}()
		h.start(starts)
	}()
}

// failWaitingIfNoWorkers fails tasks waiting for a worker when no worker
// exists or is starting: otherwise they would wait for ever.
func (h *Host) failWaitingIfNoWorkers(cause error) {
	h.mu.Lock()
	if len(h.workers) > 0 || h.starting > 0 {
		h.mu.Unlock()
		return
	}
	waiting := h.needWorker
	h.mu.Unlock()
	for _, t := range waiting {
		h.fail(t, h.taskError(t, abi.ErrorHost, "no worker process could start: "+cause.Error()))
	}
}

func (h *Host) launchWorker() (*workerProc, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := h.launcher.Launch(ctx, h.workerOptions())
	if err != nil {
		return nil, err
	}
	w := &workerProc{h: h, proc: p, conn: ipc.NewConn(p.Conn()), pid: p.PID()}
	// The worker says Ready once its runtime is set up.
	ready := make(chan error, 1)
	go func() {
		t, payload, err := w.conn.Read(nil)
		if err == nil && t != ipc.TypeReady {
			err = fmt.Errorf("host: worker sent frame %d before ready", t)
		}
		if err == nil {
			h.noteConfinement(payload)
		}
		ready <- err
	}()
	select {
	case err = <-ready:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		w.kill()
		return nil, fmt.Errorf("host: worker did not start: %w", err)
	}
	return w, nil
}

func (w *workerProc) kill() {
	if l := w.remote; l != nil {
		// Ask the executor to kill its worker; if it cannot be reached (a
		// partition), give up on the attempt shortly after.
		_ = l.send(frameKill, nil)
		time.AfterFunc(2*time.Second, l.cancel)
		return
	}
	_ = w.proc.Kill()
}

// stop ends a worker gracefully: closing its socket makes it exit; if it
// has not within a second (a guest in a loop), it is killed.
func (w *workerProc) stop() {
	_ = w.conn.Close()
	done := make(chan struct{})
	go func() { _ = w.proc.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		w.kill()
	}
}

func (w *workerProc) exec(m *ipc.Exec) error {
	return w.conn.Write(ipc.TypeExec, m.Encode(nil))
}

func (w *workerProc) cancel(t *task) {
	m := ipc.Cancel{Task: t.id}
	if w.remote != nil {
		_ = w.remote.send(ipc.TypeCancel, m.Encode(nil))
		return
	}
	_ = w.conn.Write(ipc.TypeCancel, m.Encode(nil))
}

func (w *workerProc) load(path string) {
	m := ipc.Load{ModulePath: path, MemoryPages: w.h.cfg.memoryPages()}
	_ = w.conn.Write(ipc.TypeLoad, m.Encode(nil))
}

func (w *workerProc) reply(seq uint64, code int64, payload []byte) {
	m := ipc.Reply{Seq: seq, Code: code, Payload: payload}
	if w.remote != nil {
		_ = w.remote.send(ipc.TypeReply, m.Encode(nil))
		return
	}
	_ = w.conn.Write(ipc.TypeReply, m.Encode(nil))
}

// serveWorker reads a worker's frames until it exits.
func (h *Host) serveWorker(w *workerProc) {
	var buf []byte
	var err error
	for {
		var typ ipc.Type
		var payload []byte
		typ, payload, err = w.conn.Read(buf)
		if err != nil {
			break
		}
		buf = payload[:0]
		if err = h.handleFrame(w, typ, payload); err != nil {
			h.log.Error("worker protocol error", "pid", w.pid, "err", err)
			w.kill()
			break
		}
	}
	exitErr := w.proc.Wait()
	h.workerDied(w, exitErr)
}

func (h *Host) handleFrame(w *workerProc, typ ipc.Type, payload []byte) error {
	switch typ {
	case ipc.TypeCall:
		var c ipc.Call
		if err := c.Decode(payload); err != nil {
			return err
		}
		t := h.runningTask(w, c.Task)
		if t == nil {
			if c.Seq != 0 {
				w.reply(c.Seq, int64(abi.ErrCodeCancelled), nil)
			}
			return nil
		}
		if t.foreign != nil && !c.Op.AtRunner() {
			// The owner answers everything but Get and Wait, which are
			// served here, where the task needs the values.
			c.Payload = append([]byte(nil), c.Payload...)
			h.relayCall(t, c)
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
				if err := h.objs.Seal(context.Background(), id, v); err != nil {
					h.log.Warn("refused a held put", "task_id", t.id, "err", err)
				}
			}
		case opYieldHeld:
			h.guestYield(w, t, c, abi.Value{Codec: codecHeld, Data: append([]byte(nil), c.Payload...)}, nil)
		case abi.OpSubmit:
			h.guestSubmit(t, c.Payload)
		case abi.OpPut:
			h.guestPut(t, c.Payload)
		case abi.OpCancel:
			h.guestCancel(t, c.Payload)
		case abi.OpKill:
			var req abi.KillRequest
			if req.Decode(c.Payload) == nil {
				_ = h.killActor(req.Actor, req.NoRestart)
			}
		case abi.OpGetActor:
			var req abi.GetActorRequest
			if req.Decode(c.Payload) != nil {
				w.reply(c.Seq, int64(abi.ErrCodeBadRequest), nil)
				break
			}
			a, err := h.lookupActor(req.Name, req.Namespace)
			if err != nil {
				w.reply(c.Seq, int64(abi.ErrCodeNotFound), nil)
				break
			}
			info := abi.ActorInfo{Actor: a.id, Owner: h.addr, Class: a.class}
			w.reply(c.Seq, 0, info.Encode(nil))
		case abi.OpYield:
			v, err := abi.DecodeValue(c.Payload)
			h.guestYield(w, t, c, v, err)
		case abi.OpGet, abi.OpWait, abi.OpNext:
			c.Payload = append([]byte(nil), c.Payload...)
			go h.guestWait(w, t, c)
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
		t := h.runningTask(w, d.Task)
		if t == nil {
			return nil
		}
		if t.foreign != nil {
			h.foreignDone(w, t, &d)
			return nil
		}
		te, vals := h.outcome(t, &d)
		if d.Trap != "" && t.kind == abi.KindActorCall {
			// The worker dropped the actor's instance (a trap, running out of
			// memory, an output flood): no more calls go to it, and stopping
			// the worker restarts the actor if it may, else ends it.
			h.mu.Lock()
			t.actor.broken = true
			h.mu.Unlock()
			defer w.kill()
		}
		h.finishWorker(w, t, te, vals)
	case ipc.TypeLog:
		var l ipc.Log
		if err := l.Decode(payload); err != nil {
			return err
		}
		if t := h.runningTask(w, l.Task); t != nil && t.foreign != nil {
			_ = t.foreign.send(ipc.TypeLog, payload)
			return nil
		}
		h.guestLog(w, &l)
	default:
		return fmt.Errorf("unknown frame type %d", typ)
	}
	return nil
}

// runningTask returns the task w runs, if its ID is id.
func (h *Host) runningTask(w *workerProc, id ids.TaskID) *task {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t := w.task; t != nil && t.id == id {
		return t
	}
	return nil
}

// outcome turns a Done frame into a failure or the task's return values.
func (h *Host) outcome(t *task, d *ipc.Done) (*abi.TaskError, []abi.Value) {
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
				msg = fmt.Sprintf("the guest ran out of memory (limit %d MiB)\n%s", h.memoryLimitOf(t)>>20, msg)
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
	return h.outcomeValues(t, d.Status, res.Values)
}

// outcomeValues turns a task's status and values into a failure or its
// return values.
func (h *Host) outcomeValues(t *task, status abi.Status, values []abi.Value) (*abi.TaskError, []abi.Value) {
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

// workerDied cleans up after a worker exits: its task fails (or, if it was
// cancelled with force, is cancelled), and a replacement starts if the host
// is below its warm pool size.
func (h *Host) workerDied(w *workerProc, exitErr error) {
	h.mu.Lock()
	w.dead = true
	delete(h.workers, w)
	for i, x := range h.idle {
		if x == w {
			h.idle = append(h.idle[:i], h.idle[i+1:]...)
			break
		}
	}
	t := w.task
	a := w.actor
	closed := h.closed
	if !closed && len(h.workers)+h.starting < h.cfg.Workers {
		h.startWorkerLocked()
	}
	f := w.foreign
	h.mu.Unlock()
	if closed {
		if f != nil {
			f.finish()
		} else if t != nil && t.foreign != nil {
			t.foreign.finish()
		}
		return
	}
	if a != nil {
		h.actorWorkerDied(a, w, exitErr)
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
		starts := h.dispatchLocked()
		h.mu.Unlock()
		h.start(starts)
		f.finish()
		return
	}
	if t != nil && t.foreign != nil {
		msg := fmt.Sprintf("worker process %d on host %s died while running the task", w.pid, h.cfg.ID)
		if exitErr != nil {
			msg += ": " + exitErr.Error()
		}
		h.foreignDone(w, t, &ipc.Done{Task: t.id, Trap: msg, Kind: abi.ErrorWorkerDied})
		return
	}
	if t != nil && w.remote != nil {
		h.log.Warn("a remote attempt ended without an outcome", "task_id", t.id, "host", w.remote.node, "err", exitErr)
		h.finishWorker(w, t, h.taskError(t, abi.ErrorWorkerDied, fmt.Sprintf("the task was running %v", exitErr)), nil)
		return
	}
	if t != nil {
		msg := fmt.Sprintf("worker process %d died while running the task", w.pid)
		if exitErr != nil {
			msg += ": " + exitErr.Error()
		}
		h.log.Warn("worker died", "pid", w.pid, "task_id", t.id, "err", exitErr)
		h.finishWorker(w, t, h.taskError(t, abi.ErrorWorkerDied, msg), nil)
	}
}

// guestSubmit handles a task submitted by a running task. Errors fail the
// child: the guest already holds its ObjectRefs.
func (h *Host) guestSubmit(parent *task, payload []byte) {
	var req abi.SubmitRequest
	if err := req.Decode(payload); err != nil {
		h.log.Warn("malformed submit from a guest", "task_id", parent.id, "err", err)
		return
	}
	if req.Kind == 0 {
		req.Kind = abi.KindCall
	}
	// The child's ID must be derived from this parent (ids.Children): a
	// guest cannot claim IDs in another task's space. A forged one is
	// dropped (registering it, even as failed, would touch the other
	// task's objects) and fails the submitting task.
	h.mu.Lock()
	if parent.kids == nil || parent.kidsAttempt != parent.lc.Attempt || parent.kidsWorker != parent.worker {
		parent.kids, parent.kidsAttempt, parent.kidsWorker = ids.NewChildren(parent.id), parent.lc.Attempt, parent.worker
	}
	// After one forged ID, nothing more from this task is accepted (and
	// a miss, which searches ahead, is paid for once).
	own := parent.lc.Violation == ""
	if own {
		_, own = parent.kids.Claim(req.Task)
	}
	first := !own && parent.lc.Violation == ""
	if first {
		h.stepLocked(parent, lifecycle.Violate{Why: fmt.Sprintf("%v: the guest submitted task %s, which is not a child ID of its own task (see guest-sdk/ABI.md, IDs); the submission was dropped", ErrForgedID, req.Task)})
	}
	h.mu.Unlock()
	if first {
		h.log.Warn("refused a submission with a forged task ID; the task's further submissions are dropped", "task_id", parent.id, "forged", req.Task)
	}
	if !own {
		return
	}
	child := &task{id: req.Task, parent: parent.id, job: parent.job, mod: parent.mod, kind: req.Kind, function: req.Function,
		numReturns: int(req.NumReturns), maxRetries: req.MaxRetries, retry: req.Retry, retryOn: req.RetryOn, events: !req.NoEvents,
		limits: req.Limits, grants: req.Grants, depth: parent.depth + 1, tree: parent.tree,
		strategy: scheduler.Placement{Spread: req.Scheduling.Spread, NodeID: req.Scheduling.NodeID, Soft: req.Scheduling.Soft}}
	if req.Generator {
		child.gen = &generator{backpressure: int(req.Backpressure)}
		child.numReturns = 0
	} else {
		child.numReturns = max(child.numReturns, 1)
	}
	child.args = cloneArgs(req.Args)
	err := h.prepare(child, req.Resources)
	if err == nil {
		// Capability attenuation: no more than the parent holds.
		err = h.attenuate(parent, child.grants)
	}
	f := child.mod.Funcs[child.function]
	switch {
	case err != nil:
	case (child.gen != nil) != f.Generator:
		err = fmt.Errorf("%w: %s is called as a generator but is not one, or the reverse", ErrInvalidArgument, child.function)
	case child.gen == nil && child.numReturns != f.NumReturns:
		// The host allocates per return: never trust the guest's count.
		child.numReturns = 1
		err = fmt.Errorf("%w: %s returns %d values, the call expects %d", ErrInvalidArgument, child.function, f.NumReturns, req.NumReturns)
	case child.depth > h.cfg.MaxTaskDepth:
		err = fmt.Errorf("%w: tasks nest %d deep, the limit is %d (MaxTaskDepth)", errLimit, child.depth, h.cfg.MaxTaskDepth)
	case (req.Kind == abi.KindActorCreate) != (f.Actor == "class") || (req.Kind == abi.KindActorCall) != (f.Actor == "method"):
		err = fmt.Errorf("%w: %s is not called as what it was registered as (%q)", ErrInvalidArgument, child.function, f.Actor)
	}
	if err != nil {
		// Register it so its refs exist, then fail it: the guest holds them.
		child.req = scheduler.Resources{}
		kind := abi.ErrorBadRequest
		switch {
		case errors.Is(err, errLimit):
			kind = abi.ErrorLimit
		case errors.Is(err, ErrPermissionDenied):
			kind = abi.ErrorPermissionDenied
		}
		if child.kind == abi.KindActorCreate {
			// Its calls must say why the actor is not there.
			h.mu.Lock()
			if _, dup := h.actors[child.id]; !dup {
				h.actors[child.id] = &actor{id: child.id, class: child.function, create: child, state: actorDead,
					cause: "its creation was refused: " + err.Error()}
			}
			h.mu.Unlock()
		}
		h.submitFailed(child, h.taskError(child, kind, err.Error()))
		return
	}
	if child.kind != abi.KindCall && !h.submitActor(context.Background(), child, &req) {
		return
	}
	h.submit(context.Background(), child)
}

func cloneArgs(args []abi.Arg) []abi.Arg {
	out := make([]abi.Arg, len(args))
	for i, a := range args {
		out[i] = a
		if !a.IsRef {
			out[i].Value.Data = append([]byte(nil), a.Value.Data...)
		}
		out[i].Ref.Owner = string([]byte(a.Ref.Owner))
	}
	return out
}

// guestPut stores an object put by a running task. A guest may only create
// objects under its own TaskID.
func (h *Host) guestPut(t *task, payload []byte) {
	var req abi.PutRequest
	if err := req.Decode(payload); err != nil || req.ID.Task() != t.id || !req.ID.IsPut() {
		h.mu.Lock()
		first := t.lc.Violation == ""
		if first {
			h.stepLocked(t, lifecycle.Violate{Why: fmt.Sprintf("%v: the guest put object %s, which is not a Put ID of its own task (see guest-sdk/ABI.md, IDs); the put was dropped", ErrForgedID, req.ID)})
		}
		h.mu.Unlock()
		if first { // logged once per task
			h.log.Warn("refused a put from a guest", "task_id", t.id, "object_id", req.ID, "err", err)
		}
		return
	}
	v := abi.Value{Codec: req.Value.Codec, Data: append([]byte(nil), req.Value.Data...)}
	if err := h.objs.Seal(context.Background(), req.ID, v); err != nil {
		h.log.Error("storing a put", "task_id", t.id, "err", err)
		// The guest holds the ref: a Get of it gets the failure (a full
		// store is a limit error) instead of waiting for ever.
		_ = h.objs.Seal(context.Background(), req.ID, h.taskError(t, storeErrorKind(err), "ray.Put: "+err.Error()).Encode())
	}
}

// guestCancel serves ray.Cancel from a guest.
func (h *Host) guestCancel(t *task, payload []byte) {
	var req abi.CancelRequest
	if err := req.Decode(payload); err != nil {
		return
	}
	if err := h.mayCancel(t, req.Ref); err != nil {
		// Logged and noted once per task, so a flood of them cannot push
		// other events out of the ring.
		h.mu.Lock()
		first := !t.cancelRefused && !t.lc.State.Terminal()
		if first {
			t.cancelRefused = true
			h.record(t, t.lc.State, "refused: "+err.Error())
		}
		h.mu.Unlock()
		if first {
			h.log.Warn("refused a cancel from a guest", "task_id", t.id, "err", err)
		}
		return
	}
	if owner := req.Ref.Owner; owner != "" && owner != h.addr && h.cluster != nil {
		// Only the ref's owner knows its task: pass the cancel on.
		h.goTracked(func() {
			pc, err := h.reach(owner)
			if err == nil {
				ctx, cancel := context.WithTimeout(pc.ctx, 10*time.Second)
				defer cancel()
				_, err = pc.task.Cancel(ctx, connect.NewRequest(&rayhostv1.CancelRequest{
					Ref: &rayhostv1.ObjectRef{Id: req.Ref.ID.String(), Owner: owner}, Force: req.Force, Recursive: req.Recursive}))
			}
			if err != nil {
				h.log.Debug("cancel from a guest, passed to the ref's owner", "task_id", t.id, "owner", owner, "err", err)
			}
		})
		return
	}
	if err := h.cancel(req.Ref.ID, req.Force, req.Recursive); err != nil {
		h.log.Debug("cancel from a guest", "task_id", t.id, "err", err)
	}
}

// mayCancel allows a guest to cancel a task of its own tree (itself, its
// children and theirs, its siblings submitted by the same driver or API
// call) or one whose ref it was passed as an argument; not another
// client's task it learnt the ID of.
func (h *Host) mayCancel(t *task, ref abi.Ref) error {
	for _, a := range t.args {
		if a.IsRef && a.Ref.ID.Task() == ref.ID.Task() {
			return nil
		}
	}
	if ref.Owner != "" && ref.Owner != h.addr && h.cluster != nil {
		return fmt.Errorf("%w: cancel of task %s: it is owned by another host and not among the task's arguments", ErrPermissionDenied, ref.ID.Task())
	}
	h.mu.Lock()
	target := h.tasks[ref.ID.Task()]
	h.mu.Unlock()
	if target == nil || target.tree == t.tree {
		return nil // unknown (nothing to cancel) or in its own tree
	}
	return fmt.Errorf("%w: cancel of task %s: it is not in the task's own tree nor among its arguments", ErrPermissionDenied, ref.ID.Task())
}

// guestYield seals the next item of a generator. The reply (which lets the
// guest go on) waits while backpressure holds the generator.
func (h *Host) guestYield(w *workerProc, t *task, c ipc.Call, v abi.Value, err error) {
	if err != nil || t.gen == nil {
		w.reply(c.Seq, int64(abi.ErrCodeBadRequest), nil)
		return
	}
	v.Data = append([]byte(nil), v.Data...)
	g := t.gen
	h.mu.Lock()
	g.seen++
	if g.seen <= g.count {
		// A retried attempt yields again what the first delivered: drop it.
		h.mu.Unlock()
		w.reply(c.Seq, 0, nil)
		return
	}
	i := g.count
	g.count++
	h.mu.Unlock()
	h.objs.Expect(t.id.Return(i+1), t.id) // the next item, so consumers can wait for it
	h.seal(t, t.id.Return(i), v)
	go func() {
		for {
			h.mu.Lock()
			held := g.backpressure > 0 && g.count-g.consumed >= g.backpressure
			h.mu.Unlock()
			if !held {
				w.reply(c.Seq, 0, nil)
				return
			}
			select {
			case <-g.wake:
			case <-t.cancelCh:
				w.reply(c.Seq, int64(abi.ErrCodeCancelled), nil)
				return
			}
		}
	}()
}

// guestWait serves a Get, Wait or Next from a guest. The task's CPU is
// released while it blocks.
func (h *Host) guestWait(w *workerProc, t *task, c ipc.Call) {
	var refs []ids.ObjectID
	var timeoutNs int64
	var need uint32
	var next abi.NextRequest
	switch c.Op {
	case abi.OpNext:
		if err := next.Decode(c.Payload); err != nil {
			w.reply(c.Seq, int64(abi.ErrCodeBadRequest), nil)
			return
		}
		refs, timeoutNs, need = []ids.ObjectID{next.Task.Return(int(next.Index))}, next.TimeoutNs, 1
	case abi.OpGet:
		var req abi.GetRequest
		if err := req.Decode(c.Payload); err != nil {
			w.reply(c.Seq, int64(abi.ErrCodeBadRequest), nil)
			return
		}
		refs, timeoutNs, need = refIDs(req.Refs), req.TimeoutNs, uint32(len(req.Refs))
		h.borrowRefs(req.Refs)
	default:
		var req abi.WaitRequest
		if err := req.Decode(c.Payload); err != nil || req.NumReturns < 1 || int(req.NumReturns) > len(req.Refs) {
			w.reply(c.Seq, int64(abi.ErrCodeBadRequest), nil)
			return
		}
		refs, timeoutNs, need = refIDs(req.Refs), req.TimeoutNs, req.NumReturns
		h.borrowRefs(req.Refs)
	}
	timeout := time.Duration(timeoutNs)
	if timeoutNs < 0 {
		timeout = -1
	}
	ctx := context.Background()
	// Fast path: everything is there; no need to give the CPU back.
	ready, err := h.objs.WaitReady(ctx, refs, int(need), c.Op == abi.OpGet, 0, t.cancelCh)
	if err == ErrGetTimeout && timeout != 0 {
		h.block(t)
		ready, err = h.objs.WaitReady(ctx, refs, int(need), c.Op == abi.OpGet, timeout, t.cancelCh)
		h.unblock(t)
	}
	switch {
	case err == errCancelled:
		w.reply(c.Seq, int64(abi.ErrCodeCancelled), nil)
		return
	case err == ErrGetTimeout && c.Op != abi.OpWait:
		w.reply(c.Seq, int64(abi.ErrCodeTimeout), nil)
		return
	case err != nil && err != ErrGetTimeout:
		h.replyErr(w, t, c, err)
		return
	}
	if c.Op == abi.OpNext {
		h.generatorNext(w, c, next, refs[0])
		return
	}
	if c.Op == abi.OpWait {
		var rep abi.WaitReply
		for i, r := range ready {
			if r && len(rep.Ready) < int(need) {
				rep.Ready = append(rep.Ready, uint32(i))
			}
		}
		w.reply(c.Seq, 0, rep.Encode(nil))
		return
	}
	vals, err := h.objs.Get(ctx, refs, 0, t.cancelCh)
	if err != nil {
		h.replyErr(w, t, c, err)
		return
	}
	rep := abi.GetReply{Values: vals}
	w.reply(c.Seq, 0, rep.Encode(nil))
}

// generatorNext answers a Next whose item (or end marker) exists, and counts
// the item as consumed, which may release the generator's backpressure.
func (h *Host) generatorNext(w *workerProc, c ipc.Call, req abi.NextRequest, id ids.ObjectID) {
	var rep abi.NextReply
	if codec, err := h.objs.Codec(context.Background(), id); err == nil && codec == abi.CodecError {
		if v, err := h.objs.Value(context.Background(), id); err == nil {
			rep.End = abi.DecodeTaskError(v.Data).Kind == abi.ErrorEndOfStream
		}
	}
	if !rep.End {
		h.mu.Lock()
		if g := h.tasks[req.Task]; g != nil && g.gen != nil && int(req.Index)+1 > g.gen.consumed {
			g.gen.consumed = int(req.Index) + 1
			select {
			case g.gen.wake <- struct{}{}:
			default:
			}
		}
		h.mu.Unlock()
	}
	w.reply(c.Seq, 0, rep.Encode(nil))
}

// replyErr answers a Get for an object the host does not know with an error
// value, so the guest sees which ref was wrong.
func (h *Host) replyErr(w *workerProc, t *task, c ipc.Call, err error) {
	if c.Op == abi.OpGet {
		var req abi.GetRequest
		_ = req.Decode(c.Payload)
		te := h.taskError(t, abi.ErrorBadRequest, err.Error())
		rep := abi.GetReply{Values: make([]abi.Value, len(req.Refs))}
		for i := range rep.Values {
			rep.Values[i] = te.Encode()
		}
		w.reply(c.Seq, 0, rep.Encode(nil))
		return
	}
	w.reply(c.Seq, int64(abi.ErrCodeBadRequest), nil)
}

// borrowRef makes a ref another host owns known here, so it can be waited
// on: its owner is asked about it.
func (h *Host) borrowRef(ctx context.Context, r abi.Ref) {
	if r.Owner != "" && r.Owner != h.addr && h.cluster != nil {
		h.objs.Borrow(ctx, r.ID, r.Owner)
	}
}

func (h *Host) borrowRefs(refs []abi.Ref) {
	for _, r := range refs {
		h.borrowRef(context.Background(), r)
	}
}

func refIDs(refs []abi.Ref) []ids.ObjectID {
	out := make([]ids.ObjectID, len(refs))
	for i, r := range refs {
		out[i] = r.ID
	}
	return out
}

// guestLog passes a guest's output to its job (the `rayhost run` that
// started it) and keeps the tail of stderr for error messages.
func (h *Host) guestLog(w *workerProc, l *ipc.Log) {
	h.mu.Lock()
	t := w.task
	if t == nil || t.id != l.Task {
		h.mu.Unlock()
		return
	}
	if l.Stream == 2 && len(t.stderr) < stderrKept {
		// The head: a Go guest's fatal error comes first, then a dump of
		// every goroutine.
		t.stderr = append(t.stderr, l.Data[:min(len(l.Data), stderrKept-len(t.stderr))]...)
	}
	j := t.job
	h.mu.Unlock()
	if j != nil {
		j.log(t, h.cfg.ID, l.Stream, append([]byte(nil), l.Data...))
	} else {
		h.log.Debug("guest output", "task_id", t.id, "function", t.displayName(), "stream", l.Stream, "data", string(l.Data))
	}
}

// stderrKept is how much of an attempt's stderr the host keeps for its
// error message.
const stderrKept = 4 << 10

func (h *Host) memoryLimitOf(t *task) int64 {
	if t.limits.MemoryPages > 0 {
		return int64(t.limits.MemoryPages) << 16
	}
	return h.cfg.TaskMemoryLimit
}
