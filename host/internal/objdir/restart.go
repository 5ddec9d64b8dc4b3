package objdir

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

// What a host knows of its own objects after it restarted on its store.
//
// Values (small ones written behind, large ones before they are ready) are
// in the store, and come back with it. So that the answers about the
// host's objects do not change with a restart:
//
//   - Config.Restarted says the store served this host before (the host
//     found its data dir's store there). An object the host owns and has
//     no record of (not in the table, not in the store, not freed lately)
//     was then made by its earlier life and died with it (a task that had
//     not finished, a value whose write-behind did not happen): it is
//     owner_died, not not_found. IDs carry nothing of the life that made
//     them (a child's is a hash of its parent's), so a restarted host
//     cannot tell such an object from one it never heard of; both are
//     owner_died.
//   - the store records where each value of its own held by other hosts
//     is, so it is still answered after a restart: fetched from its
//     holders, or object_lost while they are down. The record lives under
//     a key derived from the object's ID by SHA-256, with index 0: no
//     object has that index, and neither the API nor the ABI accepts an ID
//     with it, so no caller can name it. Free deletes it with the object.

// heldKey is the key of the record of where id's bytes are.
func heldKey(id ids.ObjectID) ids.ObjectID {
	sum := sha256.Sum256(append([]byte("rayhost objdir: held"), id[:]...))
	var k ids.ObjectID
	copy(k[:ids.TaskIDSize], sum[:]) // index 0
	return k
}

// notReady is the error of Holding for id when it is not ready here:
// pending (known), freed, or unknown, which a restarted host answers as
// owner_died (diedHere).
func (d *Dir) notReady(id ids.ObjectID, known bool) error {
	if !known {
		if err := d.diedHere(id); err != nil {
			return err
		}
	}
	return d.notFound(id)
}

// diedHere is the error for id, unknown here (in the table and the
// store), if this host restarted: an object of its own it has no record
// of, which died with its earlier life. It wraps ErrOwnerDied and
// ErrNotFound. Nil if the host did not restart, or freed id lately.
func (d *Dir) diedHere(id ids.ObjectID) error {
	if !d.restarted || errors.Is(d.notFound(id), ErrFreed) {
		return nil
	}
	return fmt.Errorf("%w: %w: %s: this host, its owner, restarted and has no record of it (its task had not finished, or it was never made)",
		ErrOwnerDied, ErrNotFound, id)
}

// diedWithOwner is the failure a restarted host answers for an object of
// its own it has no record of (diedHere), or false.
func (d *Dir) diedWithOwner(id ids.ObjectID) (abi.Value, bool) {
	err := d.diedHere(id)
	if err == nil {
		return abi.Value{}, false
	}
	te := &abi.TaskError{Kind: abi.ErrorOwnerDied, TaskID: id.Task().String(), Host: d.cfg.ID, Message: err.Error()}
	return te.Encode(), true
}

// heldRecordLocked is the key of the record of where ob's bytes are, if
// it has one (a value of this host's own, ready and held elsewhere), for
// Free to delete it with the object. Called with the lock held.
func heldRecordLocked(id ids.ObjectID, ob *object) (ids.ObjectID, bool) {
	if ob == nil || !ob.ready || ob.inMemory || ob.persisted || ob.owner != "" {
		return ids.ObjectID{}, false
	}
	return heldKey(id), true
}

// keepHeld records in the store where the bytes of id, a value of this
// host's own sealed as held (v is its CodecHeld value), are. A record with
// other holders (the object was rebuilt elsewhere) is replaced.
func (d *Dir) keepHeld(id ids.ObjectID, v abi.Value) {
	ctx := context.Background()
	key := heldKey(id)
	if _, old, err := d.get(ctx, key); err == nil {
		if bytes.Equal(old, v.Data) {
			return
		}
		_ = d.st.Delete(ctx, key)
	}
	meta := store.Meta{Size: int64(len(v.Data)), Codec: store.Codec(CodecHeld), Owner: d.cfg.Self, Task: id.Task(), Created: time.Now()}
	if err := d.st.Put(ctx, key, meta, v.Data); err != nil {
		d.log.Warn("recording where an object is held (a restart will not know it)", "object_id", id, "err", err)
	}
}

// recallHeld makes id ready as held if the store records where its bytes
// are (keepHeld, before a restart), and reports whether it did.
func (d *Dir) recallHeld(ctx context.Context, id ids.ObjectID) bool {
	meta, data, err := d.get(ctx, heldKey(id))
	if err != nil || abi.Codec(meta.Codec) != CodecHeld {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			d.log.Warn("reading where an object is held", "object_id", id, "err", err)
		}
		return false
	}
	if err := d.sealHeld(id, abi.Value{Codec: CodecHeld, Data: data}); err != nil {
		d.log.Warn("a bad record of where an object is held", "object_id", id, "err", err)
		return false
	}
	return true
}
