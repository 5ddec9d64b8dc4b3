package objdir

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"io"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/kinds"
	"github.com/rayhost/rayhost/store"
)

// Free drops objects nobody references any more (the owner's reference
// counter said so): their bytes leave memory and the store, and a read of
// one later fails with ErrFreed. A pending object is dropped when it is
// sealed (its task still runs; nobody will read what it makes). The store
// deletes run behind, in order after any write-behind of the same object,
// so nothing freed is left on disk.
func (d *Dir) Free(objs []ids.ObjectID) {
	if len(objs) == 0 {
		return
	}
	d.mu.Lock()
	var records []ids.ObjectID // where held values of this host's own are (restart.go)
	dels := make([]ids.ObjectID, 0, len(objs))
	for _, id := range objs {
		d.freed.add(id)
		ob := d.m[id]
		if !neverStoredLocked(ob) {
			d.deleting[id]++
			dels = append(dels, id)
		}
		d.queueFreeLocked(id, ob)
		if key, ok := heldRecordLocked(id, ob); ok {
			d.deleting[key]++
			records = append(records, key)
		}
		if ob == nil {
			continue
		}
		if !ob.ready {
			ob.freed = true // dropped by seal
			continue
		}
		d.dropLocked(id, ob)
	}
	d.frees += uint64(len(objs))
	d.mu.Unlock()
	for _, id := range dels {
		d.hand(persistJob{id: id, del: true})
	}
	for _, key := range records {
		d.hand(persistJob{id: key, del: true})
	}
	d.sendFrees()
}

// neverStoredLocked reports whether ob, about to be freed, has no bytes in
// the store and none on their way there: a value sealed in memory whose
// write was never handed to the persist loop (small or large). Its store
// delete is skipped: most objects live less than PersistAfter, and the
// delete of one never written cost as much as its write.
func neverStoredLocked(ob *object) bool {
	switch {
	case ob == nil || !ob.ready || ob.keptFor || ob.owner != "":
		return false
	case ob.deferred:
		return true
	case ob.writing != nil:
		return !ob.writing.handed
	}
	return false
}

// The store's reads, except for objects being deleted (freed): their
// bytes may still be there until the delete that follows runs.
func (d *Dir) deleted(id ids.ObjectID) bool {
	d.mu.Lock()
	_, ok := d.deleting[id]
	d.mu.Unlock()
	return ok
}

func (d *Dir) stat(ctx context.Context, id ids.ObjectID) (store.Meta, error) {
	if d.deleted(id) {
		return store.Meta{}, fmt.Errorf("%w: %s", store.ErrNotFound, id)
	}
	if w, ok := d.writingOf(id); ok {
		return w.meta, nil
	}
	return d.st.Stat(ctx, id)
}

func (d *Dir) get(ctx context.Context, id ids.ObjectID) (store.Meta, []byte, error) {
	if d.deleted(id) {
		return store.Meta{}, nil, fmt.Errorf("%w: %s", store.ErrNotFound, id)
	}
	if w, ok := d.writingOf(id); ok {
		return w.meta, w.data, nil
	}
	return d.st.Get(ctx, id)
}

func (d *Dir) open(ctx context.Context, id ids.ObjectID) (store.Meta, io.ReadCloser, error) {
	if d.deleted(id) {
		return store.Meta{}, nil, fmt.Errorf("%w: %s", store.ErrNotFound, id)
	}
	if w, ok := d.writingOf(id); ok {
		return w.meta, io.NopCloser(bytes.NewReader(w.data)), nil
	}
	return d.st.Open(ctx, id)
}

// dropLocked forgets a ready object. Its waiters were woken by its seal.
func (d *Dir) dropLocked(id ids.ObjectID, ob *object) {
	if w := ob.writing; w != nil {
		d.largeMem -= int64(len(w.data))
		if ob.unpersistable {
			d.pinned -= int64(len(w.data))
		}
		if !w.handed {
			// Deferred: never written; its room is free now.
			d.queuedLarge -= int64(len(w.data))
			d.unhanded -= int64(len(w.data))
			d.stepBehindLocked()
		}
	}
	ob.writing = nil // its write, if still queued, is skipped
	if ob.deferred {
		// Its write never started: never will (dueSmallLocked skips it).
		ob.deferred = false
		d.queued -= int64(len(ob.val.Data))
		d.stepBehindLocked()
	}
	if ob.inMemory {
		d.memBytes -= memCost(ob.val.Data)
		if ob.unpersistable {
			d.pinned -= int64(len(ob.val.Data))
		}
	}
	delete(d.m, id)
}

// freedErr is the error for a read of id, freed here, that found nothing.
func freedErr(id ids.ObjectID) error {
	return fmt.Errorf("%w (%w): %s: no reference to it was left (it was released, or the ref is stale)", ErrFreed, kinds.ErrObjectFreed, id)
}

// waitDeleted waits until no delete of id is queued: a write of the same
// ID must not be undone by a delete that runs after it.
func (d *Dir) waitDeleted(id ids.ObjectID) {
	d.mu.Lock()
	for d.deleting[id] > 0 {
		d.deletedCond.Wait()
	}
	d.mu.Unlock()
}

// freedValue is the value a wait or a Get sees for a freed object.
func freedValue(id ids.ObjectID, err error) abi.Value {
	return (&abi.TaskError{Kind: abi.ErrorObjectFreed, TaskID: id.Task().String(), Message: err.Error()}).Encode()
}

// notFound is the error for an object neither in the table nor in the
// store: ErrFreed if it was freed here lately, else ErrNotFound.
func (d *Dir) notFound(id ids.ObjectID) error {
	d.mu.Lock()
	freed := d.freed.has(id)
	d.mu.Unlock()
	if freed {
		return freedErr(id)
	}
	return fmt.Errorf("%w: %s", ErrNotFound, id)
}

// tombstones remember which objects were freed, in bounded memory: two
// generations of a Bloom filter, each taking tombstoneGen IDs before the
// older is dropped. So a read of an object freed within the last
// tombstoneGen to 2·tombstoneGen frees says "freed" (ErrFreed); an older
// one says not found. A false positive (about 1 in 100) makes an ID that
// never existed read as freed: neither is there.
type tombstones struct {
	seed      maphash.Seed
	cur, prev []uint64
	n         int
}

const (
	tombstoneGen  = 1 << 20 // IDs per generation
	tombstoneBits = 10 * tombstoneGen
	tombstoneK    = 7
)

func (t *tombstones) positions(id ids.ObjectID, fn func(word int, bit uint64)) {
	h := maphash.Bytes(t.seed, id[:])
	h1, h2 := uint32(h), uint32(h>>32)|1
	for i := range uint32(tombstoneK) {
		p := (h1 + i*h2) % tombstoneBits
		fn(int(p/64), 1<<(p%64))
	}
}

func (t *tombstones) add(id ids.ObjectID) {
	if t.cur == nil {
		t.seed = maphash.MakeSeed()
		t.cur = make([]uint64, tombstoneBits/64)
	}
	if t.n >= tombstoneGen {
		t.prev, t.cur, t.n = t.cur, make([]uint64, tombstoneBits/64), 0
	}
	t.positions(id, func(w int, b uint64) { t.cur[w] |= b })
	t.n++
}

func (t *tombstones) has(id ids.ObjectID) bool {
	in := func(f []uint64) bool {
		if f == nil {
			return false
		}
		all := true
		t.positions(id, func(w int, b uint64) { all = all && f[w]&b != 0 })
		return all
	}
	return in(t.cur) || in(t.prev)
}

// objectOverhead is what the directory spends on an object in memory
// beside its bytes (its record, its map entry, its place in the eviction
// queue), counted against Config.CacheBytes: a million tiny values cost
// what they really do, not a few megabytes.
const objectOverhead = 256

// memCost is what an in-memory value counts against the cache bound.
func memCost(data []byte) int64 { return int64(len(data)) + objectOverhead }

// Stats is what the directory holds.
type Stats struct {
	Objects  int    // objects in the table (pending, in memory, or known held)
	MemBytes int64  // bytes of values in memory: small ones with their records (objectOverhead each), and large ones in the memory tier
	Freed    uint64 // objects freed so far
	Deleting int    // freed objects whose store delete has not run yet
	Dropped  uint64 // copies of other hosts' objects deleted so far
	// Unpersisted is the bytes of values sealed or copied here and not in
	// the store yet (written behind: queued, deferred or being written).
	Unpersisted int64
}

// Stats returns the directory's counts.
func (d *Dir) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Stats{Objects: len(d.m), MemBytes: d.memBytes + d.largeMem, Freed: d.frees, Deleting: len(d.deleting), Dropped: d.dropped,
		Unpersisted: d.queued + d.queuedLarge}
}
