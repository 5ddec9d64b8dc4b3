package owner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rayhost/rayhost/host/internal/lifecycle"
	"github.com/rayhost/rayhost/host/internal/workerpool"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/ipc"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// The ops a running guest calls on its host (guest-sdk/ABI.md): submit,
// put, cancel, yield, wait, next and log, answered for the task the
// calling worker runs.

// guestSubmit handles a task submitted by a running task. Errors fail the
// child: the guest already holds its ObjectRefs.
func (gp *guestOps) guestSubmit(parent *task, payload []byte) {
	h := gp.o
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
		parent.kids, parent.kidsAttempt, parent.kidsWorker = ids.NewChildren(parent.id, parent.lc.Attempt), parent.lc.Attempt, parent.worker
	}
	// After one forged ID, nothing more from this task is accepted (and
	// a miss, which searches ahead, is paid for once).
	own := parent.lc.Violation == ""
	if own {
		_, own = parent.kids.Claim(req.Task)
	}
	first := !own && parent.lc.Violation == ""
	holder := attemptHolder(parent, parent.lc.Attempt)
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
	child.holder = holder
	err := h.adm.prepare(child, req.Resources)
	if err == nil {
		// Capability attenuation: no more than the parent holds.
		err = h.adm.attenuate(parent, child.grants)
	}
	f := child.mod.Funcs[child.function]
	switch {
	case err != nil:
	case req.MaxRetries < -1 || req.MaxRestarts < -1 || req.MaxTaskRetries < -1:
		err = fmt.Errorf("%w: retry and restart counts are -1 (no limit), 0 or more", ErrInvalidArgument)
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
	if child.kind != abi.KindCall && !h.acts.submitActor(context.Background(), child, &req) {
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
func (gp *guestOps) guestPut(t *task, payload []byte) {
	h := gp.o
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
	v := abi.Value{Codec: req.Value.Codec, Data: req.Value.Data}
	if len(payload) <= workerpool.KeepFrameBytes {
		v.Data = slices.Clone(v.Data) // in the pool's read buffer: copied
	} // else the frame's own memory: kept as it is
	h.refs.created(h.currentHolder(t), req.ID)
	if err := h.objs.Seal(context.Background(), req.ID, v); err != nil {
		h.log.Error("storing a put", "task_id", t.id, "err", err)
		// The guest holds the ref: a Get of it gets the failure (a full
		// store is a limit error) instead of waiting for ever.
		v = h.taskError(t, storeErrorKind(err), "ray.Put: "+err.Error()).Encode()
		_ = h.objs.Seal(context.Background(), req.ID, v)
	}
	h.refs.sealed(req.ID, v)
	h.acts.sealedHandles(t, req.ID, v)
}

// guestCancel serves ray.Cancel from a guest.
func (gp *guestOps) guestCancel(t *task, payload []byte) {
	h := gp.o
	var req abi.CancelRequest
	if err := req.Decode(payload); err != nil {
		return
	}
	if err := h.gops.mayCancel(t, req.Ref); err != nil {
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
		h.disp.goTracked(func() {
			pc, err := h.rem.reach(owner)
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
func (gp *guestOps) mayCancel(t *task, ref abi.Ref) error {
	h := gp.o
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
func (gp *guestOps) guestYield(w *workerProc, t *task, c ipc.Call, v abi.Value, err error) {
	h := gp.o
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
		stop, done := gp.waitStop(t)
		defer done()
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
			case <-stop:
				w.reply(c.Seq, int64(abi.ErrCodeCancelled), nil)
				return
			}
		}
	}()
}

// waitStop is what ends a blocked op of t early: its cancel, or, for a
// concurrent actor's call (which may end with ops it started still
// waiting), the end of the call. done releases it.
func (gp *guestOps) waitStop(t *task) (stop <-chan struct{}, done func()) {
	h := gp.o
	h.mu.Lock()
	cancelCh, end := t.cancelCh, t.callEnd
	h.mu.Unlock()
	if end == nil {
		return cancelCh, func() {}
	}
	either, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(either)
		select {
		case <-cancelCh:
		case <-end:
		case <-quit:
		}
	}()
	return either, func() { close(quit) }
}

// guestWait serves a Get, Wait or Next from a guest. The task's CPU is
// released while it blocks.
func (gp *guestOps) guestWait(w *workerProc, t *task, c ipc.Call) {
	h := gp.o
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
		gp.gets.Add(1)
		h.gops.borrowRefs(req.Refs)
	default:
		var req abi.WaitRequest
		err := req.Decode(c.Payload)
		if err == nil && len(req.Refs) == 0 {
			// Ray's ray.wait([]) returns ([], []).
			w.reply(c.Seq, 0, (&abi.WaitReply{}).Encode(nil))
			return
		}
		if err != nil || req.NumReturns < 1 || int(req.NumReturns) > len(req.Refs) {
			w.reply(c.Seq, int64(abi.ErrCodeBadRequest), nil)
			return
		}
		refs, timeoutNs, need = refIDs(req.Refs), req.TimeoutNs, req.NumReturns
		h.gops.borrowRefs(req.Refs)
	}
	timeout := time.Duration(timeoutNs)
	if timeoutNs < 0 {
		timeout = -1
	}
	ctx := context.Background()
	// Fast path: everything is there; no need to give the CPU back.
	ready, err := h.objs.WaitReady(ctx, refs, int(need), c.Op == abi.OpGet, 0, t.cancelCh)
	if err == ErrGetTimeout && timeout != 0 {
		stop, done := gp.waitStop(t)
		h.disp.block(t)
		ready, err = h.objs.WaitReady(ctx, refs, int(need), c.Op == abi.OpGet, timeout, stop)
		h.disp.unblock(t)
		done()
	}
	switch {
	case err == errCancelled:
		w.reply(c.Seq, int64(abi.ErrCodeCancelled), nil)
		return
	case err == ErrGetTimeout && c.Op != abi.OpWait:
		w.reply(c.Seq, int64(abi.ErrCodeTimeout), nil)
		return
	case err != nil && err != ErrGetTimeout:
		h.gops.replyErr(w, t, c, err)
		return
	}
	if c.Op == abi.OpNext {
		h.gops.generatorNext(w, c, next, refs[0])
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
		h.gops.replyErr(w, t, c, err)
		return
	}
	holder := h.readerOf(t)
	h.refs.delivered(holder, vals)
	if t.foreign == nil {
		h.acts.deliveredValues(holder, refs, vals)
	}
	rep := abi.GetReply{Values: forGuests(t.mod, vals)}
	head, tail := rep.EncodeSplit(nil)
	w.replyTail(c.Seq, 0, head, tail)
}

// generatorNext answers a Next whose item (or end marker) exists, and counts
// the item as consumed, which may release the generator's backpressure.
func (gp *guestOps) generatorNext(w *workerProc, c ipc.Call, req abi.NextRequest, id ids.ObjectID) {
	h := gp.o
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
func (gp *guestOps) replyErr(w *workerProc, t *task, c ipc.Call, err error) {
	h := gp.o
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
func (gp *guestOps) borrowRef(ctx context.Context, r abi.Ref) {
	h := gp.o
	if r.Owner != "" && r.Owner != h.addr && h.cluster != nil {
		h.objs.Borrow(ctx, r.ID, r.Owner)
	}
}

func (gp *guestOps) borrowRefs(refs []abi.Ref) {
	h := gp.o
	for _, r := range refs {
		h.gops.borrowRef(context.Background(), r)
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
func (gp *guestOps) guestLog(w *workerProc, l *ipc.Log) {
	h := gp.o
	h.mu.Lock()
	t := w.taskLocked(l.Task)
	if t == nil {
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
