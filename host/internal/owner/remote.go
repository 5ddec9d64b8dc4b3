package owner

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/host/internal/peermux"
	"github.com/rayhost/rayhost/host/internal/peerwire"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/ipc"
)

// A task placed on another host runs there as if that host were one more
// worker of its owner: the owner keeps the task (its state, retries, the
// objects it makes) and streams the worker protocol with the executing host
// over PeerService.Execute. The executor runs the task on one of its
// workers and relays the guest's calls to the owner, except Get and Wait,
// which it answers itself (pulling the objects to where the task runs).
// Values larger than the inline limit never travel to the owner: the
// executor keeps them and the owner records it as their holder.
//
// The frames of the Execute stream beyond the worker protocol's
// (ipc.TypePeerExec, TypePeerKill, TypePeerOutcome, TypePeerRefused), the
// host-internal ops (abi.OpPutHeld, OpYieldHeld) and codec (abi.CodecHeld)
// are declared by their packages; their payloads are encoded by
// host/internal/peerwire.

// maxRefusals bounds how often one task is sent back unstarted (by peers
// refusing it) before a refusal counts as a failed attempt.
const maxRefusals = 3

// Local names for the wire's held values, used by files other helpers are
// moving (objects.go, lineage.go, peerapi.go, workers.go).
const (
	codecHeld   = abi.CodecHeld
	opPutHeld   = abi.OpPutHeld
	opYieldHeld = abi.OpYieldHeld
	frameKill   = ipc.TypePeerKill
)

type heldValue = peerwire.Held

func decodeHeld(b []byte) (heldValue, error) { return peerwire.DecodeHeld(b) }

func heldAsValue(v heldValue) abi.Value { return v.Value() }

// remoteLink is the owner's end of one task attempt running on a peer: a
// link on the stream to that peer (peerstream.go).
type remoteLink struct {
	// api calls the peer; nil if node was no member when the attempt was
	// placed.
	api     rayhostv1connect.PeerServiceClient
	node    string
	peerCtx context.Context // ends when the peer leaves or fails
	// ctx is the attempt's: cancel gives up on it (its link ends).
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	link    *peermux.Link
	started bool // the link is served; an actor's next call goes on it
}

func (l *remoteLink) send(typ ipc.Type, payload []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.link == nil {
		return errWorkerGone
	}
	return l.link.Send(typ, payload)
}

// newRemoteWorker makes the owner-side stand-in for a worker on node.
func (pr *remoteRole) newRemoteWorker(node string) *workerProc {
	h := pr.o
	pc, ok := h.cluster.Named(node)
	w := &workerProc{h: h}
	l := &remoteLink{node: node}
	if ok {
		l.api, l.peerCtx = pc.API, pc.Ctx
		l.ctx, l.cancel = context.WithCancel(pc.Ctx)
	} else {
		l.ctx, l.cancel = context.WithCancel(context.Background())
		l.cancel() // the node is gone already: the attempt fails at once
	}
	w.remote = l
	return w
}

// execRemote sends t to the peer w stands for and serves the stream in the
// background.
func (pr *remoteRole) execRemote(t *task, w *workerProc) error {
	h := pr.o
	spec := &peerwire.ExecSpec{Task: t.id, Attempt: t.lc.Attempt, Kind: t.kind, Function: t.function, Module: t.mod.Digest,
		Owner: h.addr, OwnerID: h.cfg.ID, NumReturns: uint32(t.numReturns), Req: t.req, Limits: t.limits, Grants: t.grants,
		Args: make([]abi.Value, len(t.args)), ArgIDs: make([]ids.ObjectID, len(t.args))}
	if a := t.actor; a != nil {
		spec.Actor, spec.HoldCPU = a.id, a.holdCPU
		if c := a.create; c.limits.MemoryPages > 0 {
			spec.Limits.MemoryPages = c.limits.MemoryPages
		}
	}
	for i, a := range t.args {
		if !a.IsRef {
			spec.Args[i] = a.Value
			continue
		}
		hd, err := h.objs.Holding(context.Background(), a.Ref.ID)
		holders := hd.Holders
		switch {
		case err != nil:
			return fmt.Errorf("argument %d: %w", i+1, err)
		case hd.InMemory:
			spec.Args[i] = hd.Value
			continue
		case hd.Local:
			holders = append([]string{h.addr}, holders...)
		}
		spec.Args[i] = heldAsValue(heldValue{Codec: hd.Value.Codec, Size: hd.Size, Holders: holders})
		spec.ArgIDs[i] = a.Ref.ID
	}
	l := w.remote
	l.mu.Lock()
	started := l.started
	l.started = true
	l.mu.Unlock()
	if started {
		// An actor's call: its worker there is bound to this stream.
		if err := l.send(ipc.TypePeerExec, spec.Encode()); err != nil {
			return fmt.Errorf("%w: %v", errWorkerGone, err)
		}
		return nil
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.rem.serveRemote(w, spec)
	}()
	return nil
}

// serveRemote runs one remote attempt's stream: frames from the executor
// are handled as a local worker's would be. A stream that ends without an
// outcome (the peer died, was cut off, or left) is a dead worker: the task
// is retried if it may be.
func (pr *remoteRole) serveRemote(w *workerProc, spec *peerwire.ExecSpec) {
	h := pr.o
	l := w.remote
	defer l.cancel()
	var err error
	done := false
	refused := ""
	if l.api == nil {
		err = fmt.Errorf("host %s is not in the cluster", l.node)
	} else if link, oerr := h.rem.open(l, spec.Encode()); oerr != nil {
		err = oerr
	} else {
		// Giving up on the attempt (its context ends) ends its link.
		stop := context.AfterFunc(l.ctx, func() { link.Close(l.ctx.Err(), "") })
		l.mu.Lock()
		l.link = link
		l.mu.Unlock()
		for {
			var typ ipc.Type
			var payload []byte
			if typ, payload, err = link.Receive(); err != nil {
				break
			}
			if typ == ipc.TypePeerRefused {
				refused = string(payload)
				break
			}
			if typ == ipc.TypePeerOutcome {
				if err = h.rem.remoteDone(w, payload); err != nil {
					break
				}
				if !h.rem.boundActor(w) {
					done = true
					break
				}
				continue
			}
			if err = h.gops.handleFrame(w, typ, payload); err != nil {
				break
			}
			if typ == ipc.TypeDone && !h.rem.boundActor(w) {
				done = true
				break
			}
		}
		stop()
		l.mu.Lock()
		link.Close(nil, "")
		l.link = nil
		l.mu.Unlock()
	}
	if !done {
		// Whatever broke the stream (or refused the task), place nothing
		// more there until the host answers a load report again.
		h.rem.unreachable(l.node)
		if refused != "" {
			// It never started there: place it again, without a retry.
			t := h.wrk.runningTask(w, spec.Task)
			h.mu.Lock()
			again := t != nil && t.lc.Refusals < maxRefusals
			h.mu.Unlock()
			if again {
				h.disp.unstart(t, w, true, fmt.Sprintf("host %s refused it: %s", l.node, refused)) // placed again
				return
			}
			err = errors.New(refused)
		}
		if errors.Is(err, context.Canceled) && l.api != nil {
			err = fmt.Errorf("host %s left or failed", l.node)
		}
		h.wrk.workerDied(w, fmt.Errorf("on host %s: %v", l.node, err))
	}
}

// boundActor reports whether w runs an actor: its stream stays open for
// the actor's calls until the actor (or its host) ends.
func (pr *remoteRole) boundActor(w *workerProc) bool {
	h := pr.o
	h.mu.Lock()
	defer h.mu.Unlock()
	return w.actor != nil && !w.dead
}

// remoteDone finishes a remote attempt with its outcome.
func (pr *remoteRole) remoteDone(w *workerProc, payload []byte) error {
	h := pr.o
	o, err := peerwire.DecodeOutcome(payload)
	if err != nil {
		return err
	}
	t := h.wrk.runningTask(w, o.Task)
	if t == nil {
		return nil
	}
	te, vals := h.wrk.outcomeValues(t, o.Status, o.Values)
	h.disp.finishWorker(w, t, te, vals)
	return nil
}
