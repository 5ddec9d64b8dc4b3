package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

// objects is the host's view of the objects it owns or holds: which are
// still being computed, which are ready, and where their bytes are.
//
// Small values (≤ inline) stay in memory so Get and dependent tasks never
// touch the disk; they are written to the store behind the caller's back and
// dropped from memory, oldest first, once the cache is full and they are
// persisted. Larger values go straight to the store, which chunks them.
// Either way every object is read through the same calls.
type objects struct {
	st       store.Store
	inline   int
	capBytes int64
	owner    string
	log      *slog.Logger

	mu        sync.Mutex
	m         map[ids.ObjectID]*object
	fifo      []ids.ObjectID // ready in-memory objects, oldest first
	fifoHead  int
	memBytes  int64
	queued    int64 // bytes in persistCh: admitted by CheckSpace, not yet stored
	pinned    int64 // bytes of failures the full store refused, kept in memory only
	persistCh chan persistJob
	wg        sync.WaitGroup

	// remote reaches other hosts for objects whose bytes or owner are
	// elsewhere; nil on a host without peers.
	remote remoteObjects
}

// remoteObjects is how objects reaches objects that live on other hosts.
type remoteObjects interface {
	// fetch brings the bytes of id (ready, held by holders; borrowed from
	// owner if owner != "") into the local store. It may rebuild a lost
	// object first. It fails with an error wrapping ErrObjectLost or
	// ErrOwnerDied when the bytes are gone for good.
	fetch(ctx context.Context, id ids.ObjectID, holders []string, owner string) error
	// resolve starts asking owner about id in the background, until it is
	// ready, then seals it here. It must not block, nor be called with the
	// host's lock held.
	resolve(id ids.ObjectID, owner string)
}

type object struct {
	ready     bool
	fetched   bool      // someone got the value (for unhandled-error reports)
	val       abi.Value // Data is nil when the bytes live only in the store
	inMemory  bool
	persisted bool
	// unpersistable: the write-behind failed (a full store); the value
	// lives in memory only and is never evicted.
	unpersistable bool
	task          ids.TaskID
	waiters       []*waiter
	// holders are the hosts (API addresses) that hold the bytes of a value
	// that is neither in memory nor in the local store.
	holders []string
	size    int64
	// owner is set for an object another host owns (borrowed): this host
	// learnt of it through an ObjectRef and asks the owner about it.
	owner string
}

// waiter is a callback registered by onReady; cancel stops it firing, so a
// Wait that returned early leaves nothing behind on the objects it skipped.
type waiter struct {
	fn   func(abi.Value)
	dead bool // guarded by objects.mu
}

type persistJob struct {
	id   ids.ObjectID
	meta store.Meta
	data []byte
}

func newObjects(st store.Store, inline int, capBytes int64, owner string, log *slog.Logger) *objects {
	o := &objects{
		st: st, inline: inline, capBytes: capBytes, owner: owner, log: log,
		m: map[ids.ObjectID]*object{}, persistCh: make(chan persistJob, 4096),
	}
	o.wg.Add(1)
	go o.persistLoop()
	return o
}

// close waits until every sealed object is in the store.
func (o *objects) close() {
	close(o.persistCh)
	o.wg.Wait()
}

func (o *objects) persistLoop() {
	defer o.wg.Done()
	for j := range o.persistCh {
		err := o.st.Put(context.Background(), j.id, j.meta, j.data)
		o.mu.Lock()
		o.queued -= int64(len(j.data))
		o.mu.Unlock()
		if err != nil {
			o.log.Error("persisting object", "object_id", j.id, "err", err)
			o.mu.Lock()
			if ob := o.m[j.id]; ob != nil && !ob.unpersistable {
				ob.unpersistable = true // the only copy: kept in memory, not evicted
				o.pinned += int64(len(j.data))
			}
			o.evictLocked()
			o.mu.Unlock()
			continue
		}
		o.mu.Lock()
		if ob := o.m[j.id]; ob != nil {
			ob.persisted = true
		}
		o.evictLocked()
		o.mu.Unlock()
	}
}

// evictLocked drops the oldest persisted in-memory objects while the cache
// is over its bound. Their bytes stay in the store.
func (o *objects) evictLocked() {
	for o.memBytes > o.capBytes && o.fifoHead < len(o.fifo) {
		id := o.fifo[o.fifoHead]
		ob := o.m[id]
		if ob != nil && ob.ready && ob.inMemory && !ob.persisted && !ob.unpersistable {
			return // the write-behind is not done yet; try again after it
		}
		o.fifoHead++
		if ob != nil && ob.ready && ob.inMemory && !ob.unpersistable {
			o.memBytes -= int64(len(ob.val.Data))
			delete(o.m, id)
		}
	}
	if o.fifoHead > 1024 && o.fifoHead*2 > len(o.fifo) {
		o.fifo = append(o.fifo[:0], o.fifo[o.fifoHead:]...)
		o.fifoHead = 0
	}
}

// expect records that id will be made by task.
func (o *objects) expect(id ids.ObjectID, task ids.TaskID) {
	o.mu.Lock()
	if o.m[id] == nil {
		o.m[id] = &object{task: task}
	}
	o.mu.Unlock()
}

// known reports whether id is pending or ready here (or in the store).
func (o *objects) known(ctx context.Context, id ids.ObjectID) bool {
	o.mu.Lock()
	_, ok := o.m[id]
	o.mu.Unlock()
	if ok {
		return true
	}
	_, err := o.st.Stat(ctx, id)
	return err == nil
}

// seal makes id ready with v and wakes its waiters. Sealing a ready object
// again keeps the first value (objects are immutable; a retried task may
// seal twice).
func (o *objects) seal(ctx context.Context, id ids.ObjectID, v abi.Value) error {
	return o.sealOpt(ctx, id, v, false)
}

// sealTransient seals a small value that is kept in memory only, never
// written to the store: a module's description, read once by the host,
// which must not fail because the store is full.
func (o *objects) sealTransient(id ids.ObjectID, v abi.Value) error {
	if len(v.Data) > o.inline {
		return o.seal(context.Background(), id, v)
	}
	return o.sealOpt(context.Background(), id, v, true)
}

func (o *objects) sealOpt(ctx context.Context, id ids.ObjectID, v abi.Value, transient bool) error {
	if v.Codec == codecHeld {
		return o.sealHeld(id, v)
	}
	meta := store.Meta{Size: int64(len(v.Data)), Codec: store.Codec(v.Codec), Owner: o.owner, Task: id.Task(), Created: time.Now()}
	large := len(v.Data) > o.inline
	memOnly := transient && !large
	if !large && !memOnly {
		// Written behind: refuse it now if the store could not take it
		// (with what is queued), rather than hold it in memory for good.
		// Failures are always taken, in memory only if need be: they are
		// small, and a waiter must learn of them.
		o.mu.Lock()
		queued := o.queued
		o.mu.Unlock()
		if err := o.st.CheckSpace(queued + int64(len(v.Data))); err != nil {
			if v.Codec != abi.CodecError {
				return fmt.Errorf("storing object %s: %w", id, err)
			}
			memOnly = true
		}
	}
	if large {
		// Large values are written before they are ready, so a reader never
		// sees a partial object.
		if err := o.st.Put(ctx, id, meta, v.Data); err != nil {
			return fmt.Errorf("storing object %s: %w", id, err)
		}
	}
	o.mu.Lock()
	ob := o.m[id]
	if ob == nil {
		ob = &object{task: id.Task()}
		o.m[id] = ob
	}
	if ob.ready {
		o.mu.Unlock()
		return nil
	}
	ob.ready = true
	ob.val = v
	if large {
		ob.val.Data = nil
		ob.persisted = true
	} else {
		ob.inMemory = true
		o.memBytes += int64(len(v.Data))
		o.fifo = append(o.fifo, id)
	}
	waiters := ob.waiters
	ob.waiters = nil
	live := waiters[:0]
	for _, w := range waiters {
		if !w.dead {
			live = append(live, w)
		}
	}
	persist := !large && !memOnly
	if persist {
		o.queued += int64(len(v.Data))
	} else if memOnly {
		ob.unpersistable = true
		o.pinned += int64(len(v.Data))
	}
	o.mu.Unlock()
	if persist {
		o.persistCh <- persistJob{id: id, meta: meta, data: v.Data}
	}
	for _, w := range live {
		w.fn(v)
	}
	return nil
}

// sealHeld makes id ready with a value whose bytes other hosts hold. A
// ready object that is held elsewhere learns of the new holders.
func (o *objects) sealHeld(id ids.ObjectID, v abi.Value) error {
	hv, err := decodeHeld(v.Data)
	if err != nil {
		return err
	}
	o.mu.Lock()
	ob := o.m[id]
	if ob == nil {
		ob = &object{task: id.Task()}
		o.m[id] = ob
	}
	if ob.ready {
		if !ob.inMemory {
			for _, x := range hv.Holders {
				if !slices.Contains(ob.holders, x) {
					ob.holders = append(ob.holders, x)
				}
			}
		}
		o.mu.Unlock()
		return nil
	}
	ob.ready = true
	ob.val = abi.Value{Codec: hv.Codec}
	ob.size = hv.Size
	ob.holders = slices.Clone(hv.Holders)
	val := ob.val
	waiters := ob.waiters
	ob.waiters = nil
	o.mu.Unlock()
	for _, w := range waiters {
		o.mu.Lock()
		dead := w.dead
		o.mu.Unlock()
		if !dead {
			w.fn(val)
		}
	}
	return nil
}

// refill replaces what is known of an object's bytes after its owner was
// asked again: new holders, or the value itself. An object that is pending
// here (rebuilt) becomes ready, waking its waiters.
func (o *objects) refill(id ids.ObjectID, v abi.Value) {
	o.mu.Lock()
	ob := o.m[id]
	if ob == nil || !ob.ready {
		o.mu.Unlock()
		if err := o.seal(context.Background(), id, v); err != nil {
			o.log.Error("sealing a refetched object", "object_id", id, "err", err)
		}
		return
	}
	switch {
	case v.Codec == codecHeld:
		if hv, err := decodeHeld(v.Data); err == nil && !ob.inMemory {
			ob.holders, ob.size = hv.Holders, hv.Size
		}
		o.mu.Unlock()
	case ob.inMemory:
		o.mu.Unlock()
	case len(v.Data) > o.inline:
		o.mu.Unlock()
		meta := store.Meta{Size: int64(len(v.Data)), Codec: store.Codec(v.Codec), Owner: o.owner, Task: id.Task(), Created: time.Now()}
		if err := o.st.Put(context.Background(), id, meta, v.Data); err != nil {
			o.log.Error("storing a refetched object", "object_id", id, "err", err)
		}
	default:
		// Like a fresh small value: in memory, written behind, evictable.
		ob.val, ob.inMemory, ob.holders = v, true, nil
		o.memBytes += int64(len(v.Data))
		o.fifo = append(o.fifo, id)
		o.queued += int64(len(v.Data))
		o.mu.Unlock()
		meta := store.Meta{Size: int64(len(v.Data)), Codec: store.Codec(v.Codec), Owner: o.owner, Task: id.Task(), Created: time.Now()}
		o.persistCh <- persistJob{id: id, meta: meta, data: v.Data}
	}
}

// isHeld reports whether id is ready with its bytes on other hosts only.
func (o *objects) isHeld(id ids.ObjectID) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	ob := o.m[id]
	return ob != nil && ob.ready && !ob.inMemory && !ob.persisted
}

// addHolder records that holder has a copy of id.
func (o *objects) addHolder(id ids.ObjectID, holder string) {
	o.mu.Lock()
	if ob := o.m[id]; ob != nil && ob.ready && !ob.inMemory && !slices.Contains(ob.holders, holder) {
		ob.holders = append(ob.holders, holder)
	}
	o.mu.Unlock()
}

// dropHolders forgets holders that failed to deliver id.
func (o *objects) dropHolders(id ids.ObjectID, gone []string) {
	o.mu.Lock()
	if ob := o.m[id]; ob != nil {
		ob.holders = slices.DeleteFunc(ob.holders, func(h string) bool { return slices.Contains(gone, h) })
	}
	o.mu.Unlock()
}

// reset makes a ready object pending again, for its task to make it anew
// (lineage reconstruction). Its waiters from now on wait for the new value.
func (o *objects) reset(id ids.ObjectID) {
	o.mu.Lock()
	if ob := o.m[id]; ob != nil && ob.ready && !ob.inMemory && !ob.persisted {
		ob.ready, ob.val, ob.holders, ob.size = false, abi.Value{}, nil, 0
	}
	o.mu.Unlock()
}

// borrow registers id, owned by the host at owner, so that waits on it
// work here: the owner is asked about it in the background. It does nothing
// for an object known here.
func (o *objects) borrow(ctx context.Context, id ids.ObjectID, owner string) {
	o.mu.Lock()
	if o.m[id] != nil || o.remote == nil {
		o.mu.Unlock()
		return
	}
	o.mu.Unlock()
	if _, err := o.st.Stat(ctx, id); err == nil {
		return
	}
	o.mu.Lock()
	if o.m[id] != nil {
		o.mu.Unlock()
		return
	}
	o.m[id] = &object{task: id.Task(), owner: owner}
	o.mu.Unlock()
	o.remote.resolve(id, owner) // in the background
}

// holding reports what this host knows of where id's bytes are: in memory
// (the value), in the local store (local), or on other hosts.
func (o *objects) holding(ctx context.Context, id ids.ObjectID) (v abi.Value, inMemory, local bool, holders []string, size int64, err error) {
	o.mu.Lock()
	ob := o.m[id]
	if ob != nil && ob.ready && ob.inMemory {
		v = ob.val
		o.mu.Unlock()
		return v, true, true, nil, int64(len(v.Data)), nil
	}
	ready := ob != nil && ob.ready // read under the lock: a seal may come at any time
	if ob != nil {
		holders, size, v = slices.Clone(ob.holders), ob.size, abi.Value{Codec: ob.val.Codec}
	}
	o.mu.Unlock()
	meta, err := o.st.Stat(ctx, id)
	if err == nil {
		return abi.Value{Codec: abi.Codec(meta.Codec)}, false, true, holders, meta.Size, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return v, false, false, nil, 0, err
	}
	if !ready {
		return v, false, false, nil, 0, fmt.Errorf("%w: %s", ErrObjectNotFound, id)
	}
	return v, false, false, holders, size, nil
}

// ensureLocal makes sure a ready object's bytes are in memory or in the
// local store, fetching them from the hosts that hold them (or rebuilding
// them) if needed, and returns the in-memory value if there is one.
func (o *objects) ensureLocal(ctx context.Context, id ids.ObjectID) (v abi.Value, inMemory bool, err error) {
	for attempt := 0; ; attempt++ {
		o.mu.Lock()
		var owner string
		pending := false
		if ob := o.m[id]; ob != nil {
			owner, pending = ob.owner, !ob.ready
		}
		o.mu.Unlock()
		if pending {
			// Being rebuilt (or resolved from its owner): wait for it.
			if _, err := o.waitReady(ctx, []ids.ObjectID{id}, 1, true, -1, nil); err != nil {
				return v, false, err
			}
		}
		v, inMemory, local, holders, _, err := o.holding(ctx, id)
		if err != nil || inMemory || local {
			return v, inMemory, err
		}
		if o.remote == nil || attempt >= 5 {
			return v, false, fmt.Errorf("%w: %s: no copy could be fetched", ErrObjectLost, id)
		}
		if err := o.remote.fetch(ctx, id, holders, owner); err != nil {
			return v, false, err
		}
	}
}

// here reports whether id's bytes are in memory or in the local store, so
// reading it needs no other host.
func (o *objects) here(ctx context.Context, id ids.ObjectID) bool {
	_, inMemory, local, _, _, err := o.holding(ctx, id)
	return err == nil && (inMemory || local)
}

// onReady calls fn with id's value (its Data may be nil for large values)
// once it is ready, at once if it is. It fails with ErrObjectNotFound if id
// is unknown.
func (o *objects) onReady(ctx context.Context, id ids.ObjectID, fn func(abi.Value)) error {
	_, err := o.watch(ctx, id, fn)
	return err
}

// watch is onReady that returns a cancel for a callback still pending.
func (o *objects) watch(ctx context.Context, id ids.ObjectID, fn func(abi.Value)) (cancel func(), err error) {
	o.mu.Lock()
	ob := o.m[id]
	if ob != nil && !ob.ready {
		w := &waiter{fn: fn}
		if n := len(ob.waiters); n >= 64 && n&(n-1) == 0 {
			// Drop cancelled waiters now and then, so an object many Waits
			// skipped does not keep them all.
			live := ob.waiters[:0]
			for _, x := range ob.waiters {
				if !x.dead {
					live = append(live, x)
				}
			}
			ob.waiters = live
		}
		ob.waiters = append(ob.waiters, w)
		o.mu.Unlock()
		return func() { o.mu.Lock(); w.dead = true; o.mu.Unlock() }, nil
	}
	o.mu.Unlock()
	if ob != nil {
		fn(ob.val)
		return func() {}, nil
	}
	meta, err := o.st.Stat(ctx, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("%w: %s", ErrObjectNotFound, id)
		}
		return nil, err
	}
	fn(abi.Value{Codec: abi.Codec(meta.Codec)})
	return func() {}, nil
}

// value returns the bytes of a ready object, fetching them from other
// hosts if they are not here.
func (o *objects) value(ctx context.Context, id ids.ObjectID) (abi.Value, error) {
	v, inMemory, err := o.ensureLocal(ctx, id)
	if err != nil || inMemory {
		return v, err
	}
	meta, data, err := o.st.Get(ctx, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return abi.Value{}, fmt.Errorf("%w: %s", ErrObjectNotFound, id)
		}
		return abi.Value{}, err
	}
	return abi.Value{Codec: abi.Codec(meta.Codec), Data: data}, nil
}

// markFetched records that id's value was delivered to someone.
func (o *objects) markFetched(id ids.ObjectID) {
	o.mu.Lock()
	if ob := o.m[id]; ob != nil {
		ob.fetched = true
	}
	o.mu.Unlock()
}

// fetched reports whether id's value was delivered; objects no longer in
// memory count as fetched (nothing is known about them any more).
func (o *objects) fetched(id ids.ObjectID) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	ob := o.m[id]
	return ob == nil || ob.fetched
}

// codec returns the codec of a ready object.
func (o *objects) codec(ctx context.Context, id ids.ObjectID) (abi.Codec, error) {
	o.mu.Lock()
	ob := o.m[id]
	o.mu.Unlock()
	if ob != nil && ob.ready {
		return ob.val.Codec, nil
	}
	meta, err := o.st.Stat(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("%w: %s", ErrObjectNotFound, id)
	}
	return abi.Codec(meta.Codec), nil
}

// errCancelled ends a wait because the waiting task was cancelled.
var errCancelled = errors.New("host: waiting task cancelled")

// waitReady blocks until at least need of refs are ready (all, for Get), one
// of them failed (when failFast), the timeout passes (< 0: none), ctx ends
// or cancel closes. It returns which refs are ready.
func (o *objects) waitReady(ctx context.Context, refs []ids.ObjectID, need int, failFast bool, timeout time.Duration, cancel <-chan struct{}) ([]bool, error) {
	ready := make([]bool, len(refs))
	var mu sync.Mutex
	count, failed := 0, false
	wake := make(chan struct{}, 1)
	signal := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	var cancels []func()
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	for i, id := range refs {
		cancel, err := o.watch(ctx, id, func(v abi.Value) {
			mu.Lock()
			if !ready[i] {
				ready[i] = true
				count++
			}
			if v.Codec == abi.CodecError {
				failed = true
			}
			done := count >= need || (failFast && failed)
			mu.Unlock()
			if done {
				signal()
			}
		})
		if err != nil {
			return nil, err
		}
		cancels = append(cancels, cancel)
	}
	var timer <-chan time.Time
	if timeout >= 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	snapshot := func() ([]bool, bool) {
		mu.Lock()
		defer mu.Unlock()
		return append([]bool(nil), ready...), count >= need || (failFast && failed)
	}
	for {
		if r, done := snapshot(); done {
			return r, nil
		}
		select {
		case <-wake:
		case <-timer:
			r, _ := snapshot()
			return r, ErrGetTimeout
		case <-cancel:
			return nil, errCancelled
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// get waits for refs and returns their values. When one has failed, it
// returns at once and every slot not ready yet holds that failure.
func (o *objects) get(ctx context.Context, refs []ids.ObjectID, timeout time.Duration, cancel <-chan struct{}) ([]abi.Value, error) {
	ready, err := o.waitReady(ctx, refs, len(refs), true, timeout, cancel)
	if err != nil {
		return nil, err
	}
	vals := make([]abi.Value, len(refs))
	var firstErr *abi.Value
	for i, id := range refs {
		if !ready[i] {
			continue
		}
		o.markFetched(id)
		if vals[i], err = o.value(ctx, id); err != nil {
			kind := abi.ErrorObjectLost
			switch {
			case errors.Is(err, ErrOwnerDied):
				kind = abi.ErrorOwnerDied
			case !errors.Is(err, ErrObjectLost):
				return nil, err
			}
			vals[i] = (&abi.TaskError{Kind: kind, TaskID: id.Task().String(), Message: err.Error()}).Encode()
		}
		if vals[i].Codec == abi.CodecError && firstErr == nil {
			firstErr = &vals[i]
		}
	}
	for i := range vals {
		if !ready[i] {
			vals[i] = *firstErr
		}
	}
	return vals, nil
}

// storeErrorKind is the kind of task error a failed store write becomes: a
// full store is a limit (resource_exhausted), anything else a host fault.
func storeErrorKind(err error) abi.ErrorKind {
	if errors.Is(err, store.ErrStoreFull) {
		return abi.ErrorLimit
	}
	return abi.ErrorHost
}
