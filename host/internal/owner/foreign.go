package owner

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/host/internal/lifecycle"
	"github.com/rayhost/rayhost/host/internal/peermux"
	"github.com/rayhost/rayhost/host/internal/peerwire"
	"github.com/rayhost/rayhost/host/internal/refcount"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/ipc"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// The executor's side of remote execution (remote.go has the owner's): a
// host runs tasks other hosts own, streaming the worker protocol with the
// owner over PeerService.Execute.

// foreign is the executor's end of a task it runs for another host.
type foreign struct {
	owner, ownerID string
	mu             sync.Mutex
	link           *peermux.Link // nil once the attempt's link is no longer served
	done           chan struct{}
	once           sync.Once

	// For an actor: its ID, and (guarded by Host.mu) the worker its
	// creation bound, the call running on it, and the resources it holds.
	actor   ids.TaskID
	holdCPU bool
	worker  *workerProc
	current *task
	held    *scheduler.Resources
	// holder holds the refs the tasks run here for the owner read (their
	// arguments, their Gets): borrows of this host's until it ends.
	holder refcount.Holder
}

func (f *foreign) send(typ ipc.Type, payload []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.link == nil {
		return errWorkerGone // the link ended: it is no longer ours
	}
	return f.link.Send(typ, payload)
}

// detach is called as the link's service ends: a worker that ends later
// must not send on it.
func (f *foreign) detach() {
	f.mu.Lock()
	f.link = nil
	f.mu.Unlock()
}

func (f *foreign) finish() { f.once.Do(func() { close(f.done) }) }

// execute serves PeerService.Execute: the stream from one owner, each of
// whose links (peerstream.go) runs one attempt of the owner's tasks here,
// or an actor: its creation, then its calls, on one worker. It returns when
// the stream ends; a stream that breaks the protocol is refused as invalid.
func (fx *executor) execute(ctx context.Context, stream *connect.BidiStream[rayhostv1.ExecuteRequest, rayhostv1.ExecuteResponse]) error {
	h := fx.o
	m := peermux.New(serverStream{stream}, peermux.Config{Accept: func(l *peermux.Link, typ ipc.Type, payload []byte) {
		err := fx.serveLink(ctx, l, payload)
		reason := ""
		if err != nil {
			reason = err.Error()
		}
		l.Close(nil, reason)
	}})
	err := m.Run()
	if errors.Is(err, peermux.ErrProtocol) {
		h.log.Warn("a peer broke the peer protocol", "err", err)
		return invalid("%v", err)
	}
	return nil
}

// serveLink runs the attempt (or actor) a link carries, whose first frame
// (an exec) is first.
func (fx *executor) serveLink(ctx context.Context, link *peermux.Link, first []byte) error {
	h := fx.o
	spec, err := peerwire.DecodeExecSpec(first)
	if err != nil {
		return invalid("exec: %v", err)
	}
	f := &foreign{owner: spec.Owner, ownerID: spec.OwnerID, link: link, done: make(chan struct{}), actor: spec.Actor, holdCPU: spec.HoldCPU,
		holder: foreignHolder(spec)}
	// What it read is held until it has ended, after its outcome went
	// (foreignDone flushed their borrows first).
	defer h.refs.dropHolder(f.holder)
	defer f.detach()
	// Work only for members, and stop when gossip says the owner is gone
	// (a stream to a dead host may take long to break).
	pc, err := h.rem.awaitMember(ctx, spec.Owner)
	if err != nil {
		_ = f.send(ipc.TypePeerRefused, []byte(fmt.Sprintf("host %s does not know the owner: %v", h.cfg.ID, err)))
		return nil
	}
	ctx, cancel := mergeCancel(ctx, pc.ctx)
	defer cancel()
	// The link ending ends what runs for it, as its stream's end did.
	ctx, cancelLink := context.WithCancel(ctx)
	defer cancelLink()
	h.fgn.startForeign(ctx, f, spec)

	// Frames from the owner: replies to relayed calls, cancels, kills, and an
	// actor's next calls. The link ending early means the owner is gone or
	// gave up on the attempt: stop what runs for it.
	go func() {
		for {
			typ, payload, err := link.Receive()
			if err != nil {
				h.fgn.foreignGone(f)
				cancelLink()
				return
			}
			h.mu.Lock()
			t := f.current
			var w *workerProc
			if t != nil {
				w = t.worker
			}
			h.mu.Unlock()
			switch typ {
			case ipc.TypeReply:
				if w != nil && w.pw != nil {
					_ = w.pw.Send(ipc.TypeReply, payload)
				}
			case ipc.TypeCancel:
				// Only the call it names: on an actor's stream the next call
				// may already be running.
				var c ipc.Cancel
				if t != nil && c.Decode(payload) == nil && c.Task == t.id {
					h.fgn.foreignCancel(t, false)
				}
			case ipc.TypePeerKill:
				h.fgn.foreignGone(f)
			case ipc.TypePeerExec:
				spec, err := peerwire.DecodeExecSpec(payload)
				if err != nil || f.actor.IsZero() || spec.Actor != f.actor {
					h.log.Warn("a bad exec on an actor's stream", "owner", f.ownerID, "err", err)
					h.fgn.foreignGone(f)
					return
				}
				go h.fgn.startForeign(ctx, f, spec)
			}
		}
	}()
	select {
	case <-f.done:
	case <-ctx.Done():
		h.fgn.foreignGone(f)
		select {
		case <-f.done:
		case <-time.After(2 * time.Second):
		}
	}
	return nil
}

// startForeign runs one task of spec for f's owner: an actor's call on the
// worker f bound, anything else through this host's scheduler.
func (fx *executor) startForeign(ctx context.Context, f *foreign, spec *peerwire.ExecSpec) {
	h := fx.o
	fail := func(kind abi.ErrorKind, msg string) {
		if spec.Kind == abi.KindActorCall && kind != abi.ErrorActorDied {
			// Only this call failed; the actor's instance is fine (a trap
			// would make its owner drop it).
			te := &abi.TaskError{Kind: kind, TaskID: spec.Task.String(), Function: spec.Function, Host: h.cfg.ID, Message: msg}
			o := peerwire.Outcome{Task: spec.Task, Status: abi.StatusError, Values: []abi.Value{te.Encode()}}
			_ = f.send(ipc.TypePeerOutcome, o.Encode())
			return
		}
		d := ipc.Done{Task: spec.Task, Trap: msg, Kind: kind}
		_ = f.send(ipc.TypeDone, d.Encode(nil))
		if spec.Kind != abi.KindActorCall {
			f.finish()
		}
	}
	// refuse: this host cannot start it (the owner places it again); an
	// actor's call, bound to its worker here, fails instead.
	refuse := func(msg string) {
		if spec.Kind == abi.KindActorCall {
			fail(abi.ErrorHost, msg)
			return
		}
		_ = f.send(ipc.TypePeerRefused, []byte(msg))
		f.finish()
	}
	mod, err := h.fgn.ensureModule(ctx, spec.Module, spec.Owner)
	if err != nil {
		refuse(fmt.Sprintf("host %s could not get the module: %v", h.cfg.ID, err))
		return
	}
	t := &task{id: spec.Task, lc: lifecycle.Task{Attempt: spec.Attempt}, kind: spec.Kind, function: spec.Function, mod: mod,
		numReturns: int(spec.NumReturns), req: spec.Req, limits: spec.Limits, grants: spec.Grants, foreign: f, tree: &tree{}}
	t.limits.TimeoutNs = 0 // the owner times the attempt
	t.args = make([]abi.Arg, len(spec.Args))
	for i, v := range spec.Args {
		if v.Codec != codecHeld {
			t.args[i] = abi.Arg{Value: v}
			continue
		}
		if v, err = h.fgn.pullArg(ctx, spec.ArgIDs[i], v, spec.Owner); err != nil {
			msg := fmt.Sprintf("host %s could not fetch argument %d: %v", h.cfg.ID, i+1, err)
			switch {
			case errors.Is(err, ErrObjectLost) || errors.Is(err, ErrOwnerDied):
				// Gone for good: placing it elsewhere would not help.
				kind := abi.ErrorObjectLost
				if errors.Is(err, ErrOwnerDied) {
					kind = abi.ErrorOwnerDied
				}
				fail(kind, msg)
			default:
				refuse(msg)
			}
			return
		}
		t.args[i] = abi.Arg{Value: v}
	}
	if t.grants, err = h.adm.checkGrants(t.grants); err != nil {
		fail(abi.ErrorPermissionDenied, err.Error())
		return
	}
	t.cancelCh = make(chan struct{})
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		refuse("host " + h.cfg.ID + " is shutting down")
		return
	}
	f.current = t
	if t.kind == abi.KindActorCall {
		w := f.worker
		if w == nil || w.dead || w.task != nil {
			h.mu.Unlock()
			fail(abi.ErrorActorDied, "the actor's worker on host "+h.cfg.ID+" is gone")
			return
		}
		t.lc.State, t.worker, w.task = stateRunning, w, t
		h.mu.Unlock()
		h.disp.start([]assignment{{t: t, w: w}})
		return
	}
	t.lc.State = statePendingResources
	if err := h.sched.Enqueue(t.id, t.req, scheduler.Placement{NodeID: h.cfg.ID}, t); err != nil {
		f.current = nil
		h.mu.Unlock()
		refuse(fmt.Sprintf("host %s cannot run it: %v", h.cfg.ID, err))
		return
	}
	starts := h.disp.dispatchLocked()
	h.mu.Unlock()
	h.disp.start(starts)
}

// foreignGone stops everything running here for f's owner: the owner went
// away or asked for a kill. An actor's worker is stopped (its owner
// restarts it elsewhere if it may).
func (fx *executor) foreignGone(f *foreign) {
	h := fx.o
	h.mu.Lock()
	t, w := f.current, f.worker
	h.mu.Unlock()
	if w != nil {
		w.kill() // its owner sees the stream end, and restarts it elsewhere
		f.finish()
		return
	}
	if t != nil {
		h.fgn.foreignCancel(t, true)
		return
	}
	f.finish()
}

// pullArg brings a held argument here and returns its bytes.
func (fx *executor) pullArg(ctx context.Context, id ids.ObjectID, v abi.Value, owner string) (abi.Value, error) {
	h := fx.o
	hv, err := decodeHeld(v.Data)
	if err != nil {
		return abi.Value{}, err
	}
	if h.objs.Here(ctx, id) {
		return h.objs.Value(ctx, id)
	}
	// From a holder; if none gives it, the owner says where it is now (it
	// rebuilds it if every copy is gone).
	if err := h.objs.Fetch(ctx, id, hv.Holders, owner); err != nil {
		return abi.Value{}, err
	}
	v, err = h.objs.Value(ctx, id)
	if err == nil && v.Codec == abi.CodecError {
		// Its owner says it is gone (lost, or its owner died).
		te := abi.DecodeTaskError(v.Data)
		if te.Kind == abi.ErrorOwnerDied {
			return abi.Value{}, fmt.Errorf("%w: %s", ErrOwnerDied, te.Message)
		}
		return abi.Value{}, fmt.Errorf("%w: %s", ErrObjectLost, te.Message)
	}
	return v, err
}

// foreignCancel stops a task run for another host.
func (fx *executor) foreignCancel(t *task, force bool) {
	h := fx.o
	h.mu.Lock()
	later := h.stepLocked(t, lifecycle.Cancel{Force: force})
	starts := h.disp.dispatchLocked()
	h.mu.Unlock()
	run(later) // a queued task tells its owner it was cancelled
	h.disp.start(starts)
}

// relayCall sends a guest's call to the owner of its task. A large put or
// yield stays here: the owner is told this host holds it.
func (fx *executor) relayCall(t *task, c ipc.Call) {
	h := fx.o
	switch c.Op {
	case abi.OpPut:
		var req abi.PutRequest
		if err := req.Decode(c.Payload); err == nil && req.ID.Task() == t.id && req.ID.IsPut() && h.fgn.keepHere(req.Value) {
			v, err := h.fgn.holdHere(t.foreign.owner, req.ID, req.Value)
			if err == nil {
				c.Op, c.Payload = abi.OpPutHeld, (&peerwire.PutHeld{ID: req.ID, Held: v.Data}).Encode()
			}
		}
	case abi.OpYield:
		if v, err := abi.DecodeValue(c.Payload); err == nil && h.fgn.keepHere(v) {
			h.mu.Lock()
			id := t.id.Return(t.yields)
			t.yields++
			h.mu.Unlock()
			if hv, err := h.fgn.holdHere(t.foreign.owner, id, v); err == nil {
				c.Op, c.Payload = abi.OpYieldHeld, hv.Data
			}
		} else if err == nil {
			h.mu.Lock()
			t.yields++
			h.mu.Unlock()
		}
	}
	_ = t.foreign.send(ipc.TypeCall, c.Encode(nil))
}

// keepHere reports whether a value a guest made here stays here (its owner
// records this host as the holder) rather than travel to the owner.
func (fx *executor) keepHere(v abi.Value) bool {
	h := fx.o
	return v.Codec != abi.CodecError && len(v.Data) > h.cfg.InlineObjectLimit
}

// holdHere stores a value made here for an object owner owns and returns
// the held value that tells the owner where it is. The copy is recorded as
// owner's: it goes when owner frees the object.
func (fx *executor) holdHere(owner string, id ids.ObjectID, v abi.Value) (abi.Value, error) {
	h := fx.o
	data := append([]byte(nil), v.Data...)
	if err := h.objs.SealFor(context.Background(), id, owner, abi.Value{Codec: v.Codec, Data: data}); err != nil {
		return abi.Value{}, err
	}
	return heldAsValue(heldValue{Codec: v.Codec, Size: int64(len(data)), Holders: []string{h.addr}}), nil
}

// foreignDone ends a task run for another host: the worker goes back to
// use and the outcome goes to the owner.
func (fx *executor) foreignDone(w *workerProc, t *task, d *ipc.Done) {
	h := fx.o
	f := t.foreign
	h.mu.Lock()
	keep := false // the stream stays open: an actor lives on w
	if w.task == t {
		w.task = nil
		switch {
		case w.dead:
		case w.foreign == f:
			keep = true // an actor's call ended
		case t.kind == abi.KindActorCreate && d.Trap == "" && d.Status == abi.StatusOK && !t.lc.Cancelled:
			w.foreign, f.worker, keep = f, w, true
		default:
			w.idleLocked()
		}
	}
	if f.current == t {
		f.current = nil
	}
	// The owner decides the outcome and seals it (below): here the attempt
	// is simply over.
	_ = h.stepLocked(t, lifecycle.Done{})
	if keep && t.kind == abi.KindActorCreate && f.holdCPU {
		h.sched.Acquire(t.req)
		req := t.req
		f.held = &req
	}
	starts := h.disp.dispatchLocked()
	h.mu.Unlock()
	defer h.disp.start(starts)
	if !keep {
		defer f.finish()
	}
	// The owner keeps this attempt's arguments until it learns the attempt
	// ended: the borrows of what it read reach the owner first.
	ctx, cancel := context.WithTimeout(context.Background(), flushWait)
	h.brw.flush(ctx, f.owner)
	cancel()
	if d.Trap != "" {
		_ = t.foreign.send(ipc.TypeDone, d.Encode(nil))
		return
	}
	var res abi.Result
	if err := res.Decode(d.Result); err != nil {
		bad := ipc.Done{Task: t.id, Trap: "undecodable result: " + err.Error(), Kind: abi.ErrorHost}
		_ = t.foreign.send(ipc.TypeDone, bad.Encode(nil))
		return
	}
	for i, v := range res.Values {
		if d.Status == abi.StatusOK && h.fgn.keepHere(v) && i < t.numReturns {
			hv, err := h.fgn.holdHere(f.owner, t.id.Return(i), v)
			if err != nil {
				bad := ipc.Done{Task: t.id, Trap: "keeping a result: " + err.Error(), Kind: abi.ErrorHost}
				_ = t.foreign.send(ipc.TypeDone, bad.Encode(nil))
				return
			}
			res.Values[i] = hv
		}
	}
	o := peerwire.Outcome{Task: t.id, Status: d.Status, Values: res.Values}
	_ = t.foreign.send(ipc.TypePeerOutcome, o.Encode())
}

// foreignHolder is who holds, on the executing host, the refs a task run
// for another host reads: its attempt, or its actor (for its whole life
// here).
func foreignHolder(spec *peerwire.ExecSpec) refcount.Holder {
	if !spec.Actor.IsZero() {
		return refcount.Holder("actor:" + spec.Actor.String() + "@" + spec.Owner)
	}
	return refcount.Holder("task:" + spec.Task.String() + "/" + strconv.FormatUint(uint64(spec.Attempt), 10) + "@" + spec.Owner)
}

// flushWait bounds how long an outcome waits for its borrows to reach the
// owner (an owner that does not answer gets the outcome anyway).
const flushWait = 10 * time.Second
