package owner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/host/internal/refcount"
	"github.com/rayhost/rayhost/internal/ids"
)

// borrowRole is Ray's borrower protocol between hosts (ownership-based
// reference counting, docs/ARCHITECTURE.md "Object lifetime").
//
// As a borrower: when something here first counts a ref another host owns
// (a task run here got it in an argument or a Get, an API client's session
// read it), this host registers as a borrower with the owner; when nothing
// here counts it any more (refcount.ReleaseBorrow), it tells the owner and
// deletes its copy. Both go in batches per owner, one call in flight per
// owner, in the order they were made (a release never overtakes its
// registration; a registration and a release not sent yet cancel out).
//
// The race between a ref being sent and its borrow arriving is closed by
// the sender, as in Ray: a task run here for another host has its
// arguments (and whatever holds what it reads) kept by its owner until
// the owner learns the attempt ended, and this host flushes the attempt's
// registrations — and waits for the owner's answer — before it sends the
// attempt's outcome (flush). A borrow that arrives after the owner freed
// the object anyway (an API client here read a ref inside a value nobody
// else held) is answered "freed", and the holders here read the object as
// object_freed.
//
// As an owner: it serves Borrow (adds, then releases, for a member) and
// releases every borrow of a host that left or failed (hostGone). The
// borrows one host may hold are bounded (maxBorrowsPerHost).
type borrowRole struct {
	o *Owner
	// limit is the most objects one host may borrow from this one.
	limit int
	// enabled: the host is in a cluster (else there are no borrows).
	enabled bool
	// member names the member whose API is at addr ("" if none, or this
	// host); call sends one Borrow to an owner. Tests replace them.
	member func(addr string) string
	call   func(owner string, add, release []ids.ObjectID) (freed, unknown []ids.ObjectID, err error)

	mu  sync.Mutex
	out map[string]*borrowQueue // by owner address
	// tries counts, per borrow not released, the times its owner said it
	// does not know the object.
	tries map[ids.ObjectID]int
}

// borrowQueue is what is still to tell one owner.
type borrowQueue struct {
	add, release map[ids.ObjectID]struct{}
	// done is closed when the running sender ends (nil: none runs).
	done chan struct{}
}

const (
	// maxBorrowsPerHost bounds what one host may borrow from this one.
	maxBorrowsPerHost = 1 << 20
	// maxBorrowBatch bounds the IDs of one Borrow call.
	maxBorrowBatch = 16384
	// unknownTries bounds how often a borrow the owner does not know is
	// sent again (a ref may reach a host before its owner registered it).
	unknownTries = 20
	// borrowRetry is the pause before an unknown borrow, or a call that
	// failed, is sent again.
	borrowRetry = 500 * time.Millisecond
)

func newBorrowRole(h *Owner) *borrowRole {
	b := &borrowRole{o: h, limit: maxBorrowsPerHost, enabled: h.cfg.Clustered, out: map[string]*borrowQueue{}, tries: map[ids.ObjectID]int{}}
	b.member = func(addr string) string {
		if addr == h.addr {
			return ""
		}
		return h.rem.nodeName(addr)
	}
	b.call = b.callPeer
	return b
}

func (b *borrowRole) queue(owner string) *borrowQueue {
	q := b.out[owner]
	if q == nil {
		q = &borrowQueue{add: map[ids.ObjectID]struct{}{}, release: map[ids.ObjectID]struct{}{}}
		b.out[owner] = q
	}
	return q
}

// registered queues the registration of a borrow of id, which owner
// owns. The refs role calls it with its lock held, so that a release
// the counter says later is queued after it; kick sends it.
func (b *borrowRole) registered(owner string, id ids.ObjectID) {
	if !b.enabled {
		return
	}
	b.mu.Lock()
	q := b.queue(owner)
	if _, ok := q.release[id]; ok {
		delete(q.release, id) // the owner still has it as borrowed
	} else {
		q.add[id] = struct{}{}
	}
	b.mu.Unlock()
}

// kick starts the senders of owners with something queued.
func (b *borrowRole) kick(owners []string) {
	for _, owner := range owners {
		b.mu.Lock()
		q := b.out[owner]
		start := q != nil && b.startLocked(q)
		b.mu.Unlock()
		b.spawn(start, owner, q)
	}
}

// released queues the release of borrows of objects owner owns.
func (b *borrowRole) released(owner string, objs []ids.ObjectID) {
	if len(objs) == 0 || !b.enabled {
		return
	}
	b.mu.Lock()
	q := b.queue(owner)
	for _, id := range objs {
		delete(b.tries, id)
		if _, ok := q.add[id]; ok {
			delete(q.add, id) // never sent: nothing to release
			continue
		}
		q.release[id] = struct{}{}
	}
	start := b.startLocked(q)
	b.mu.Unlock()
	b.spawn(start, owner, q)
}

// startLocked reports whether q's sender must start (none runs and there
// is something to send): then it is marked running, and the caller calls
// spawn once it has let go of the lock.
func (b *borrowRole) startLocked(q *borrowQueue) bool {
	if q.done != nil || len(q.add)+len(q.release) == 0 {
		return false
	}
	q.done = make(chan struct{})
	return true
}

// spawn runs owner's sender, if start, in a goroutine Close waits for;
// once the host is closing it sends nothing (the owners release its
// borrows when it leaves).
func (b *borrowRole) spawn(start bool, owner string, q *borrowQueue) {
	if !start {
		return
	}
	h := b.o
	h.mu.Lock()
	closed := h.closed
	if !closed {
		h.wg.Add(1)
	}
	h.mu.Unlock()
	if closed {
		b.mu.Lock()
		clear(q.add)
		clear(q.release)
		close(q.done)
		q.done = nil
		b.mu.Unlock()
		return
	}
	go func() {
		defer h.wg.Done()
		b.send(owner, q)
	}()
}

// flush waits until everything queued for owner is sent and answered (or
// ctx ends).
func (b *borrowRole) flush(ctx context.Context, owner string) {
	for {
		b.mu.Lock()
		q := b.out[owner]
		if q == nil || (q.done == nil && len(q.add)+len(q.release) == 0) {
			b.mu.Unlock()
			return
		}
		start := b.startLocked(q)
		done := q.done
		b.mu.Unlock()
		b.spawn(start, owner, q)
		if done == nil {
			return // the host is closing
		}
		select {
		case <-done:
		case <-ctx.Done():
			return
		}
	}
}

// send tells owner what q holds, batch after batch, until q is empty.
func (b *borrowRole) send(owner string, q *borrowQueue) {
	h := b.o
	fails := 0
	for {
		b.mu.Lock()
		add := takeSome(q.add, maxBorrowBatch)
		release := takeSome(q.release, maxBorrowBatch-len(add))
		if len(add)+len(release) == 0 {
			close(q.done)
			q.done = nil
			if len(q.add)+len(q.release) == 0 {
				delete(b.out, owner)
			}
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		freed, unknown, err := b.call(owner, add, release)
		if err != nil {
			if fails >= 5 || (h.cluster != nil && h.rem.peerDown(owner)) {
				// The owner is gone (its borrows die with it) or does not
				// take them: the refs here stay readable while copies exist.
				h.log.Debug("borrows not told to their owner", "owner", owner, "objects", len(add)+len(release), "err", err)
				continue
			}
			fails++
			b.mu.Lock()
			for _, id := range add {
				if _, ok := q.release[id]; ok {
					delete(q.release, id)
				} else {
					q.add[id] = struct{}{}
				}
			}
			for _, id := range release {
				if _, ok := q.add[id]; ok {
					delete(q.add, id) // borrowed again: the owner's borrow stands
				} else {
					q.release[id] = struct{}{}
				}
			}
			b.mu.Unlock()
			sleepCtx(context.Background(), borrowRetry)
			continue
		}
		fails = 0
		if len(freed) > 0 {
			b.ownerFreed(freed)
		}
		b.retryUnknown(owner, add, unknown)
	}
}

// retryUnknown queues the borrows owner did not know again, after a pause,
// up to unknownTries times each (unless released meanwhile).
func (b *borrowRole) retryUnknown(owner string, sent, unknown []ids.ObjectID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, id := range sent {
		if !slices.Contains(unknown, id) {
			delete(b.tries, id)
		}
	}
	var again []ids.ObjectID
	q := b.out[owner]
	for _, id := range unknown {
		if q != nil {
			if _, ok := q.release[id]; ok {
				// Released while the owner was asked: it holds no borrow.
				delete(q.release, id)
				delete(b.tries, id)
				continue
			}
		}
		if b.tries[id]++; b.tries[id] < unknownTries {
			again = append(again, id)
		} else {
			delete(b.tries, id)
		}
	}
	if len(again) == 0 {
		return
	}
	time.AfterFunc(borrowRetry, func() {
		b.mu.Lock()
		q := b.queue(owner)
		for _, id := range again {
			if _, ok := b.tries[id]; ok { // not released meanwhile
				q.add[id] = struct{}{}
			}
		}
		start := b.startLocked(q)
		b.mu.Unlock()
		b.spawn(start, owner, q)
	})
}

// takeSome removes up to n IDs from m and returns them, sorted.
func takeSome(m map[ids.ObjectID]struct{}, n int) []ids.ObjectID {
	var out []ids.ObjectID
	for _, id := range slices.SortedFunc(maps.Keys(m), compareIDs) {
		if len(out) >= n {
			break
		}
		out = append(out, id)
		delete(m, id)
	}
	return out
}

func compareIDs(a, b ids.ObjectID) int { return slices.Compare(a[:], b[:]) }

// callPeer sends one Borrow to owner.
func (b *borrowRole) callPeer(owner string, add, release []ids.ObjectID) (freed, unknown []ids.ObjectID, err error) {
	h := b.o
	pc, err := h.rem.reach(owner)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(pc.ctx, 30*time.Second)
	defer cancel()
	res, err := pc.api.Borrow(ctx, connect.NewRequest(&rayhostv1.BorrowRequest{Borrower: h.addr, Add: idStrings(add), Release: idStrings(release)}))
	if err != nil {
		return nil, nil, err
	}
	return parseIDs(res.Msg.GetFreed()), parseIDs(res.Msg.GetUnknown()), nil
}

// ownerFreed: the owner of objs says they were freed before this host's
// borrow reached it. Whoever holds them here reads them as object_freed.
func (b *borrowRole) ownerFreed(objs []ids.ObjectID) {
	h := b.o
	h.log.Info("borrowed objects were freed by their owner before the borrow reached it", "objects", len(objs), "object_id", objs[0])
	h.objs.OwnerFreedHere(objs)
}

func idStrings(objs []ids.ObjectID) []string {
	out := make([]string, len(objs))
	for i, id := range objs {
		out[i] = id.String()
	}
	return out
}

func parseIDs(ss []string) []ids.ObjectID {
	out := make([]ids.ObjectID, 0, len(ss))
	for _, s := range ss {
		if id, err := ids.ParseObjectID(s); err == nil {
			out = append(out, id)
		}
	}
	return out
}

// errBorrowLimit: a host asked to borrow more than maxBorrowsPerHost.
var errBorrowLimit = errors.New("owner: too many borrows from one host")

// serve serves a Borrow from the member at addr: its adds, then its
// releases. It answers which adds name objects already freed, and which
// it does not know.
func (b *borrowRole) serve(addr string, add, release []ids.ObjectID) (freed, unknown []ids.ObjectID, err error) {
	h := b.o
	name := b.member(addr)
	if name == "" {
		return nil, nil, fmt.Errorf("%w: borrower %q: %v", ErrInvalidArgument, addr, errNotMember)
	}
	if len(add)+len(release) > maxBorrowBatch {
		return nil, nil, fmt.Errorf("%w: %d objects in one borrow call, at most %d", ErrInvalidArgument, len(add)+len(release), maxBorrowBatch)
	}
	var acts []refcount.Action
	var notCounted []ids.ObjectID
	r := h.refs
	r.mu.Lock()
	if n := r.c.Borrowed(name); n+len(add) > b.limit {
		r.mu.Unlock()
		return nil, nil, fmt.Errorf("%w: host %s borrows %d objects, at most %d", errBorrowLimit, name, n, b.limit)
	}
	for _, id := range add {
		if !r.c.AddBorrower(id, name) {
			notCounted = append(notCounted, id)
		}
	}
	for _, id := range release {
		acts = append(acts, r.c.ReleaseBorrower(id, name)...)
	}
	r.mu.Unlock()
	r.carryOut(acts)
	// Not counted: freed, or kept for good (an object the counter never
	// counted is never freed), or not registered here yet.
	ctx := context.Background()
	for _, id := range notCounted {
		switch {
		case h.objs.Freed(id):
			freed = append(freed, id)
		case !h.objs.Known(ctx, id):
			unknown = append(unknown, id)
		}
	}
	return freed, unknown, nil
}

// hostGone releases the borrows of the member name, which left or
// failed.
func (b *borrowRole) hostGone(name string) {
	r := b.o.refs
	r.mu.Lock()
	acts := r.c.HostGone(name)
	r.mu.Unlock()
	r.carryOut(acts)
}

func (p *peerAPI) Borrow(ctx context.Context, req *connect.Request[rayhostv1.BorrowRequest]) (*connect.Response[rayhostv1.BorrowResponse], error) {
	add, err := parseAll(req.Msg.GetAdd())
	if err != nil {
		return nil, invalid("%v", err)
	}
	release, err := parseAll(req.Msg.GetRelease())
	if err != nil {
		return nil, invalid("%v", err)
	}
	freed, unknown, err := p.h.brw.serve(req.Msg.GetBorrower(), add, release)
	switch {
	case errors.Is(err, errBorrowLimit):
		return nil, connect.NewError(connect.CodeResourceExhausted, err)
	case err != nil:
		return nil, toConnect(err)
	}
	return connect.NewResponse(&rayhostv1.BorrowResponse{Freed: idStrings(freed), Unknown: idStrings(unknown)}), nil
}

func (p *peerAPI) FreeCopies(ctx context.Context, req *connect.Request[rayhostv1.FreeCopiesRequest]) (*connect.Response[rayhostv1.FreeCopiesResponse], error) {
	h := p.h
	objs, err := parseAll(req.Msg.GetIds())
	if err != nil {
		return nil, invalid("%v", err)
	}
	if len(objs) > maxBorrowBatch {
		return nil, invalid("%d objects in one call, at most %d", len(objs), maxBorrowBatch)
	}
	owner := req.Msg.GetOwner()
	if owner == h.addr || !h.rem.isMember(owner) {
		return nil, invalid("owner %q: %v", owner, errNotMember)
	}
	// Only copies recorded as owner's go, and none something here counts.
	n := h.objs.OwnerFreed(ctx, owner, objs, h.refs.counted)
	return connect.NewResponse(&rayhostv1.FreeCopiesResponse{Deleted: int32(n)}), nil
}

func parseAll(ss []string) ([]ids.ObjectID, error) {
	out := make([]ids.ObjectID, 0, len(ss))
	for _, s := range ss {
		id, err := ids.ParseObjectID(s)
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, nil
}

// readerOf is who holds the refs t reads: its attempt's holder, or for a
// task run here for another host, its foreign holder.
func (h *Owner) readerOf(t *task) refcount.Holder {
	if t.foreign != nil {
		return t.foreign.holder
	}
	return h.currentHolder(t)
}

// counted reports whether the counter counts id (a borrow here not yet
// released keeps this host's copy).
func (r *refsRole) counted(id ids.ObjectID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.c.Counted(id)
}

func (p hostPeers) FreeCopies(ctx context.Context, addr string, objs []ids.ObjectID) error {
	pc, err := p.h.rem.reach(addr)
	if err != nil {
		return err
	}
	ctx, cancel := mergeCancel(ctx, pc.ctx)
	defer cancel()
	_, err = pc.api.FreeCopies(ctx, connect.NewRequest(&rayhostv1.FreeCopiesRequest{Owner: p.h.addr, Ids: idStrings(objs)}))
	return err
}
