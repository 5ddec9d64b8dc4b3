package owner

import (
	"fmt"

	"github.com/rayhost/rayhost/host/internal/refcount"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// Actor lifetime (Ray's "actor fate-sharing"): an actor lives while a
// handle to it is referenced, and its owner — the attempt, actor or
// session that created it — references it until it ends. So when the
// owner ends and no handle is held elsewhere, the actor is killed for
// good and its name freed; a Detached actor is held by the host itself
// until it dies.
//
// The counting is the reference counter's (host/internal/refcount): a
// handle is a reference to abi.ActorRef(actor), the creation's return,
// which the creator holds from Submit on. Copies of a handle count the way
// refs do — as an argument of a submitted task until it ends, inside a
// stored value as long as that value lives, by a holder that read one —
// with one difference: a handle is a capability. A ref nested in a value
// counts for whoever reads it; a handle counts only when it came by a path
// already counted (the submitter of a task held it, the producer of a
// value held it, the object read counted it). A guest that writes an
// actor's ID into a value of its own ("forges" a handle) gets nothing
// counted, can neither keep that actor alive nor kill it (kill needs a
// counted handle), and its calls through it run but keep nothing alive.
//
// When the counter frees an actor's ref (carryOut), handlesGone kills the
// actor. A method call keeps its actor alive until it ends (it counts as
// the call's argument), so an owner that returns a call's ref and ends
// does not cut that call short: the actor dies after its queued calls, as
// Ray's actors do when their handles go out of scope.

// detachedHolder holds a detached actor's ref while the actor lives.
func detachedHolder(id ids.TaskID) refcount.Holder {
	return refcount.Holder("detached:" + id.String())
}

// killedByLifetime is the cause of death of an actor nobody references.
const killedByLifetime = "its owner ended and no handle to it is left (not detached)"

// checkDetachedLocked refuses a detached creation beyond the host's cap:
// detached actors outlive their creators, so a flood of them would keep
// every worker for good. The cap is MaxWorkers live detached actors.
func (ac *actorTable) checkDetachedLocked() error {
	h := ac.o
	n := 0
	for _, a := range h.actors {
		if a.detached && a.state != actorDead {
			n++
		}
	}
	if n >= h.cfg.MaxWorkers {
		return fmt.Errorf("%w: %d detached actors live on this host, the limit is %d (MaxWorkers)", errLimit, n, h.cfg.MaxWorkers)
	}
	return nil
}

// counted adds what an actor task keeps alive beyond what refs.submitted
// counted, right after it: a detached actor is held by the host; a method
// call keeps its actor alive until it ends; a task keeps the actors whose
// handles its inline arguments carry, if its submitter holds them.
func (ac *actorTable) counted(t *task) {
	if t.holder == "" || t.foreign != nil {
		return
	}
	var handles []abi.Ref
	for _, a := range t.args {
		if !a.IsRef { // a ref argument's object counts its contents
			handles = append(handles, abi.NestedActors(a.Value)...)
		}
	}
	if t.kind == abi.KindCall && len(handles) == 0 {
		return // the common case takes no lock
	}
	var parent *task // whose attempt submits t (it may run on another host)
	if len(handles) > 0 || t.kind == abi.KindActorCall {
		ac.o.mu.Lock()
		parent = ac.o.tasks[t.parent]
		ac.o.mu.Unlock()
	}
	has := func(c *refcount.Counter, x ids.ObjectID) bool {
		if c.Holds(t.holder, x) > 0 {
			return true
		}
		return parent != nil && hasHandleLocked(c, parent, t.holder, x)
	}
	r := ac.o.refs
	self := ac.o.addr
	r.mu.Lock()
	defer r.mu.Unlock()
	if t.kind == abi.KindActorCreate && t.actor != nil && t.actor.detached {
		r.c.Add(detachedHolder(t.id), abi.ActorRef(t.id), "", 1)
	}
	if t.kind == abi.KindActorCall && t.actor != nil {
		if x := abi.ActorRef(t.actor.id); has(r.c, x) {
			r.c.AddArg(t.id, x)
		}
	}
	for _, x := range handles {
		if own(x, self) && has(r.c, x.ID) {
			r.c.AddArg(t.id, x.ID)
		}
	}
}

func own(x abi.Ref, self string) bool { return x.Owner == "" || x.Owner == self }

// nestedActors returns the handles inside each of the first n of vals, or
// nil if there are none (the common case allocates nothing).
func nestedActors(vals []abi.Value, n int) [][]abi.Ref {
	var out [][]abi.Ref
	for i, v := range vals[:min(n, len(vals))] {
		if hs := abi.NestedActors(v); len(hs) > 0 {
			if out == nil {
				out = make([][]abi.Ref, min(n, len(vals)))
			}
			out[i] = hs
		}
	}
	return out
}

// deliveredArgs counts, for the attempt of t about to run, the handles
// inside its arguments that t's submission counted (inline arguments) or
// that the argument objects contain.
func (ac *actorTable) deliveredArgs(t *task, holder refcount.Holder, vals []abi.Value) {
	if t.foreign != nil {
		return
	}
	handles := nestedActors(vals, len(vals))
	if handles == nil {
		return
	}
	r := ac.o.refs
	self := ac.o.addr
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, hs := range handles {
		for _, x := range hs {
			if !own(x, self) {
				continue
			}
			ok := r.c.HasArg(t.id, x.ID)
			if i < len(t.args) && t.args[i].IsRef {
				ok = r.c.Contains(t.args[i].Ref.ID, x.ID)
			}
			if ok {
				r.c.Add(holder, x.ID, "", 1)
			}
		}
	}
}

// deliveredValues counts, for holder that read vals (the values of refs),
// the handles each object was counted as containing.
func (ac *actorTable) deliveredValues(holder refcount.Holder, refs []ids.ObjectID, vals []abi.Value) {
	handles := nestedActors(vals, len(refs))
	if handles == nil {
		return
	}
	r := ac.o.refs
	self := ac.o.addr
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, hs := range handles {
		for _, x := range hs {
			if own(x, self) && r.c.Contains(refs[i], x.ID) {
				r.c.Add(holder, x.ID, "", 1)
			}
		}
	}
}

// sealedHandles counts the handles inside id's value (just sealed by t's
// running attempt) that the attempt holds: they stay alive as long as id.
func (ac *actorTable) sealedHandles(t *task, id ids.ObjectID, v abi.Value) {
	hs := abi.NestedActors(v)
	if len(hs) == 0 {
		return
	}
	producer := ac.o.currentHolder(t)
	r := ac.o.refs
	self := ac.o.addr
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range hs {
		if own(x, self) && hasHandleLocked(r.c, t, producer, x.ID) {
			r.c.Contain(id, x.ID)
		}
	}
}

// hasHandleLocked reports whether t's running attempt (holder) has a
// counted handle whose ref is x: it holds one, or one of t's arguments
// counted one (an attempt running on another host gets its arguments
// there, uncounted here). The caller holds refsRole.mu.
func hasHandleLocked(c *refcount.Counter, t *task, holder refcount.Holder, x ids.ObjectID) bool {
	if c.Holds(holder, x) > 0 || c.HasArg(t.id, x) {
		return true
	}
	for _, a := range t.args {
		if a.IsRef && c.Contains(a.Ref.ID, x) {
			return true
		}
	}
	return false
}

// gotActor counts the handle get_actor gave holder (a named actor is
// public by its name: finding it is a way to hold it).
func (ac *actorTable) gotActor(holder refcount.Holder, a *actor) {
	r := ac.o.refs
	r.mu.Lock()
	r.c.Add(holder, abi.ActorRef(a.id), "", 1)
	r.mu.Unlock()
}

// mayKill reports whether t (its running attempt, or its actor) may kill
// actor: it has a counted handle to it (hasHandleLocked), or it is that
// actor.
func (ac *actorTable) mayKill(t *task, actor ids.TaskID) bool {
	if t.actor != nil && t.actor.id == actor {
		return true
	}
	holder := ac.o.currentHolder(t)
	r := ac.o.refs
	r.mu.Lock()
	defer r.mu.Unlock()
	return hasHandleLocked(r.c, t, holder, abi.ActorRef(actor))
}

// handlesGone kills, for good, the actors whose refs the counter freed:
// nobody references them any more.
func (ac *actorTable) handlesGone(freed []ids.ObjectID) {
	h := ac.o
	var doomed []ids.TaskID
	h.mu.Lock()
	for _, id := range freed {
		a := h.actors[id.Task()]
		if a == nil || id != abi.ActorRef(a.id) || a.detached || a.state == actorDead || a.killed {
			continue
		}
		a.killCause = killedByLifetime
		doomed = append(doomed, a.id)
	}
	h.mu.Unlock()
	for _, id := range doomed {
		h.log.Info("killing an actor nobody references", "actor_id", id)
		_ = ac.killActor(id, true)
	}
}

// undetachLocked lets go of a dead detached actor's ref, behind the caller
// (who holds Owner.mu).
func (ac *actorTable) undetachLocked(a *actor) {
	h := ac.o
	if !a.detached || h.closed {
		return
	}
	id := a.id
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.refs.dropHolder(detachedHolder(id))
	}()
}
