package owner

import (
	"context"
	"slices"
	"strconv"
	"sync"

	"github.com/rayhost/rayhost/host/internal/refcount"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// refsRole is the shell of the host's reference counter
// (host/internal/refcount): it feeds it the owner's events — a task
// submitted with its arguments, a value sealed with the refs inside it, an
// attempt or an actor that ended, a holder's release — and carries out
// what it says: free objects from the directory, forget lineage.
//
// Who holds what: the returns of a task a guest submits, and the objects
// it puts, are held by the submitting attempt (by its actor, for an
// actor's creation and calls: an actor's state outlives a call) until the
// attempt ends or the guest releases them; the refs a task's result
// contains are held by that result; a task holds its by-reference
// arguments, and the refs inside its inline ones, until it has ended.
// Refs handed to API clients are held by their session, or anonymously
// for a while (sessions.go). Refs of objects other hosts own are borrows:
// the first count here registers this host with the owner, the last
// release tells it (borrow.go); what tasks run here for other hosts read
// is held by their foreign holder (foreign.go).
//
// Its lock is its own, taken after Owner.mu when both are held; the
// actions run with neither.
type refsRole struct {
	o  *Owner
	mu sync.Mutex
	c  *refcount.Counter
}

// attemptHolder is who holds the refs attempt a of t makes: the attempt,
// or t's actor.
func attemptHolder(t *task, attempt uint32) refcount.Holder {
	if t.actor != nil {
		return actorHolder(t.actor.id)
	}
	return refcount.Holder("task:" + t.id.String() + "/" + strconv.FormatUint(uint64(attempt), 10))
}

func actorHolder(id ids.TaskID) refcount.Holder { return refcount.Holder("actor:" + id.String()) }

// submitted counts t, about to be registered: its returns are held by
// t.holder, its arguments by t. A task run here for another host, or
// with no holder, is not counted (its owner counts it).
func (r *refsRole) submitted(t *task) {
	if t.holder == "" || t.foreign != nil {
		return
	}
	var args []ids.ObjectID
	for _, a := range t.args {
		if a.IsRef {
			args = append(args, a.Ref.ID)
			continue
		}
		for _, x := range abi.NestedRefs(a.Value) {
			args = append(args, x.ID)
		}
	}
	returns := t.returns()
	if t.gen != nil {
		returns = nil // its items are not counted yet: kept
	}
	r.mu.Lock()
	r.c.Submit(t.holder, t.id, returns, args)
	r.mu.Unlock()
}

// delivered records that holder got the refs inside vals (the arguments
// or Get results a guest reads): it holds each occurrence until it
// releases it or ends. Refs of objects other hosts own start a borrow
// here; an own object no longer counted is skipped.
func (r *refsRole) delivered(holder refcount.Holder, vals []abi.Value) {
	var nested []abi.Ref
	for _, v := range vals {
		nested = append(nested, abi.NestedRefs(v)...)
	}
	if len(nested) == 0 {
		return
	}
	self := r.o.addr
	var borrows []string
	r.mu.Lock()
	for _, x := range nested {
		owner := x.Owner
		if owner == self {
			owner = ""
		}
		if owner != "" && !r.c.Counted(x.ID) {
			r.o.brw.registered(owner, x.ID)
			borrows = appendOwner(borrows, owner)
		}
		r.c.Add(holder, x.ID, owner, 1)
	}
	r.mu.Unlock()
	r.borrowed(borrows)
}

// borrowed sends the registrations of new borrows (objects of other hosts
// this host counts from now on, queued with the lock held) to owners
// (borrow.go).
func (r *refsRole) borrowed(owners []string) {
	if len(owners) > 0 {
		r.o.brw.kick(owners)
	}
}

func appendOwner(owners []string, owner string) []string {
	if slices.Contains(owners, owner) {
		return owners
	}
	return append(owners, owner)
}

// created counts an object h made (a Put).
func (r *refsRole) created(h refcount.Holder, id ids.ObjectID) {
	r.mu.Lock()
	r.c.Create(h, id)
	r.mu.Unlock()
}

// sealed tells the counter id's value is there, with the refs it
// contains.
func (r *refsRole) sealed(id ids.ObjectID, v abi.Value) {
	var contains []ids.ObjectID
	for _, x := range abi.NestedRefs(v) {
		contains = append(contains, x.ID)
	}
	r.mu.Lock()
	acts := r.c.Sealed(id, contains)
	r.mu.Unlock()
	r.carryOut(acts)
}

// ended records the end of t's attempt (and of t, if it is over): the
// attempt's refs are released, and t's arguments unless its lineage is
// kept. An actor's refs stay with the actor.
func (r *refsRole) ended(t *task, attempt uint32, over, keepLineage bool) {
	var acts []refcount.Action
	r.mu.Lock()
	if t.actor == nil {
		acts = r.c.DropHolder(attemptHolder(t, attempt))
	}
	if over {
		acts = append(acts, r.c.TaskEnded(t.id, keepLineage)...)
	}
	r.mu.Unlock()
	r.carryOut(acts)
}

// rebuilding records that t runs again to rebuild a lost result.
func (r *refsRole) rebuilding(t *task) {
	r.mu.Lock()
	r.c.Rebuilding(t.id)
	r.mu.Unlock()
}

// dropHolder releases everything h holds (an actor died or restarted).
func (r *refsRole) dropHolder(h refcount.Holder) {
	r.mu.Lock()
	acts := r.c.DropHolder(h)
	r.mu.Unlock()
	r.carryOut(acts)
}

// release drops n of h's refs to each of objs (a holder's own release).
func (r *refsRole) release(h refcount.Holder, objs []ids.ObjectID, n []int32) {
	var acts []refcount.Action
	r.mu.Lock()
	for i, id := range objs {
		k := int32(1)
		if i < len(n) {
			k = n[i]
		}
		acts = append(acts, r.c.Release(h, id, k)...)
	}
	r.mu.Unlock()
	r.carryOut(acts)
}

// carryOut does what the counter said: frees objects, forgets lineage,
// and ends borrows of other hosts' objects: their owners are told
// (borrow.go) and the copies here go.
func (r *refsRole) carryOut(acts []refcount.Action) {
	if len(acts) == 0 {
		return
	}
	var free, dropped []ids.ObjectID
	var forget []ids.TaskID
	var unborrow map[string][]ids.ObjectID
	for _, a := range acts {
		switch a.Kind {
		case refcount.Free:
			free = append(free, a.ID)
		case refcount.ForgetLineage:
			forget = append(forget, a.Task)
		case refcount.ReleaseBorrow:
			if unborrow == nil {
				unborrow = map[string][]ids.ObjectID{}
			}
			unborrow[a.Owner] = append(unborrow[a.Owner], a.ID)
			dropped = append(dropped, a.ID)
		}
	}
	for owner, objs := range unborrow {
		r.o.brw.released(owner, objs)
	}
	if len(dropped) > 0 {
		r.o.objs.DropCopy(context.Background(), dropped)
	}
	if len(forget) > 0 {
		h := r.o
		h.mu.Lock()
		for _, id := range forget {
			delete(h.lineage, id)
		}
		h.mu.Unlock()
	}
	r.o.objs.Free(free)
	r.o.acts.handlesGone(free) // actors nobody references (actorlife.go)
}

// stats returns the counter's counts.
func (r *refsRole) stats() refcount.Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.c.Stats()
}

// snapshot returns why each counted object is alive.
func (r *refsRole) snapshot() []refcount.Refs {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.c.Snapshot()
}

// guestRelease serves a guest's release (ABI op release): the calling
// attempt (or actor) gives back refs it held. Counts beyond what it holds
// are ignored: nobody releases another holder's refs.
func (gp *guestOps) guestRelease(t *task, payload []byte) {
	var req abi.ReleaseRequest
	if req.Decode(payload) != nil {
		return
	}
	counts := make([]int32, len(req.Counts))
	for i, c := range req.Counts {
		counts[i] = int32(min(c, 1<<30))
	}
	gp.o.refs.release(gp.o.currentHolder(t), req.IDs, counts)
}

// currentHolder is who holds what t's running attempt makes.
func (h *Owner) currentHolder(t *task) refcount.Holder {
	h.mu.Lock()
	defer h.mu.Unlock()
	return attemptHolder(t, t.lc.Attempt)
}

// dropRefs releases what an actor that died or restarts held, behind the
// caller (who holds Owner.mu).
func (ac *actorTable) dropRefs(a *actor) {
	h := ac.o
	if h.closed {
		return
	}
	id := a.id
	h.wg.Add(1) // goTracked, whose lock the caller holds
	go func() {
		defer h.wg.Done()
		h.refs.dropHolder(actorHolder(id))
	}()
}

// held is delivered for a holder that lets go of what it holds itself (an
// API caller, sessions.go): it returns the refs it now holds, once per
// occurrence.
func (r *refsRole) held(holder refcount.Holder, vals []abi.Value) []ids.ObjectID {
	var nested []abi.Ref
	for _, v := range vals {
		nested = append(nested, abi.NestedRefs(v)...)
	}
	if len(nested) == 0 {
		return nil
	}
	var out []ids.ObjectID
	var borrows []string
	self := r.o.addr
	r.mu.Lock()
	for _, x := range nested {
		owner := x.Owner
		if owner == self {
			owner = ""
		}
		if owner != "" && !r.c.Counted(x.ID) {
			r.o.brw.registered(owner, x.ID)
			borrows = appendOwner(borrows, owner)
		}
		if r.c.Add(holder, x.ID, owner, 1) {
			out = append(out, x.ID)
		}
	}
	r.mu.Unlock()
	r.borrowed(borrows)
	return out
}
