package objdir

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

// Holding is what a host knows of where an object's bytes are.
type Holding struct {
	// Value is the value if InMemory; else only its Codec is set.
	Value abi.Value
	// InMemory: the bytes are in memory (Value.Data). Local is then true.
	InMemory bool
	// Local: the bytes are in memory or in the local store.
	Local bool
	// Holders are other hosts known to hold the bytes.
	Holders []string
	// Size is the value's size in bytes, if known.
	Size int64
}

// IsHeld reports whether id is ready with its bytes on other hosts only.
func (d *Dir) IsHeld(id ids.ObjectID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	ob := d.m[id]
	return ob != nil && ob.ready && !ob.inMemory && !ob.persisted
}

// AddHolder records that holder has a copy of id (a ready object whose
// bytes are not in memory here).
func (d *Dir) AddHolder(id ids.ObjectID, holder string) {
	d.mu.Lock()
	if ob := d.m[id]; ob != nil && ob.ready && !ob.inMemory && !slices.Contains(ob.holders, holder) {
		ob.holders = append(ob.holders, holder)
	}
	d.mu.Unlock()
}

// DropHolders forgets holders that failed to deliver id.
func (d *Dir) DropHolders(id ids.ObjectID, gone []string) {
	d.mu.Lock()
	if ob := d.m[id]; ob != nil {
		ob.holders = slices.DeleteFunc(ob.holders, func(h string) bool { return slices.Contains(gone, h) })
	}
	d.mu.Unlock()
}

// Reset makes a ready object whose bytes are only on other hosts pending
// again, for its task to make it anew (lineage reconstruction). Its waiters
// from now on wait for the new value. Objects with a copy here are kept.
func (d *Dir) Reset(id ids.ObjectID) {
	d.mu.Lock()
	if ob := d.m[id]; ob != nil && ob.ready && !ob.inMemory && !ob.persisted {
		ob.ready, ob.val, ob.holders, ob.size = false, abi.Value{}, nil, 0
	}
	d.mu.Unlock()
}

// Borrow registers id, owned by the host at owner, so that waits on it
// work here: the owner is asked about it in the background until it is
// ready, and the answer (its value, where it is held, or why it failed) is
// sealed here. It does nothing for an object known here (but ask again
// about a provisional failure whose cause may have passed: see reask),
// outside a cluster, or once the Dir is closed.
func (d *Dir) Borrow(ctx context.Context, id ids.ObjectID, owner string) {
	d.mu.Lock()
	known := d.m[id] != nil
	if known || d.remote.peers == nil {
		d.mu.Unlock()
		if known {
			d.reask(id) // a provisional failure whose cause has passed
		}
		return
	}
	d.mu.Unlock()
	if _, err := d.stat(ctx, id); err == nil {
		return
	}
	d.mu.Lock()
	if d.m[id] != nil {
		d.mu.Unlock()
		return
	}
	d.m[id] = &object{task: id.Task(), owner: owner}
	d.mu.Unlock()
	d.remote.goBackground(func(ctx context.Context) { d.remote.resolve(ctx, id, owner) })
}

// Holding reports what this host knows of where id's bytes are: in memory
// (the value), in the local store, or on other hosts. It fails with
// ErrNotFound for an object neither ready nor stored here.
func (d *Dir) Holding(ctx context.Context, id ids.ObjectID) (Holding, error) {
	d.mu.Lock()
	ob := d.m[id]
	if ob != nil && ob.ready && ob.inMemory {
		v := ob.val
		d.mu.Unlock()
		return Holding{Value: v, InMemory: true, Local: true, Size: int64(len(v.Data))}, nil
	}
	ready := ob != nil && ob.ready // read under the lock: a seal may come at any time
	var h Holding
	if ob != nil {
		h = Holding{Holders: slices.Clone(ob.holders), Size: ob.size, Value: abi.Value{Codec: ob.val.Codec}}
	}
	d.mu.Unlock()
	meta, err := d.stat(ctx, id)
	if err == nil {
		return Holding{Value: abi.Value{Codec: abi.Codec(meta.Codec)}, Local: true, Holders: h.Holders, Size: meta.Size}, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return Holding{Value: h.Value}, err
	}
	if !ready {
		return Holding{Value: h.Value}, d.notReady(id, ob != nil)
	}
	return h, nil
}

// EnsureLocal makes sure a ready object's bytes are in memory or in the
// local store, fetching them from the hosts that hold them (or rebuilding
// them) if needed, and returns the in-memory value if there is one. A
// pending object is waited for first.
func (d *Dir) EnsureLocal(ctx context.Context, id ids.ObjectID) (v abi.Value, inMemory bool, err error) {
	for attempt := 0; ; attempt++ {
		d.mu.Lock()
		var owner string
		pending := false
		if ob := d.m[id]; ob != nil {
			owner, pending = ob.owner, !ob.ready
		}
		d.mu.Unlock()
		if pending {
			// Being rebuilt (or resolved from its owner): wait for it.
			if _, err := d.WaitReady(ctx, []ids.ObjectID{id}, 1, true, -1, nil); err != nil {
				return v, false, err
			}
		}
		h, err := d.Holding(ctx, id)
		if err != nil || h.InMemory || h.Local {
			return h.Value, h.InMemory, err
		}
		if d.remote.peers == nil || attempt >= 5 {
			return h.Value, false, fmt.Errorf("%w: %s: no copy could be fetched", ErrLost, id)
		}
		if err := d.Fetch(ctx, id, h.Holders, owner); err != nil {
			return h.Value, false, err
		}
	}
}

// Here reports whether id's bytes are in memory or in the local store, so
// reading it needs no other host.
func (d *Dir) Here(ctx context.Context, id ids.ObjectID) bool {
	h, err := d.Holding(ctx, id)
	return err == nil && (h.InMemory || h.Local)
}

// Value returns the bytes of a ready object, fetching them from other
// hosts if they are not here.
func (d *Dir) Value(ctx context.Context, id ids.ObjectID) (abi.Value, error) {
	v, inMemory, err := d.EnsureLocal(ctx, id)
	if err != nil || inMemory {
		return v, err
	}
	meta, data, err := d.get(ctx, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return abi.Value{}, d.notFound(id)
		}
		return abi.Value{}, err
	}
	return abi.Value{Codec: abi.Codec(meta.Codec), Data: data}, nil
}

// MarkFetched records that id's value was delivered to someone.
func (d *Dir) MarkFetched(id ids.ObjectID) {
	d.mu.Lock()
	if ob := d.m[id]; ob != nil {
		ob.fetched = true
	}
	d.mu.Unlock()
}

// Fetched reports whether id's value was delivered; objects no longer in
// memory count as fetched (nothing is known about them any more).
func (d *Dir) Fetched(id ids.ObjectID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	ob := d.m[id]
	return ob == nil || ob.fetched
}

// Codec returns the codec of a ready object.
func (d *Dir) Codec(ctx context.Context, id ids.ObjectID) (abi.Codec, error) {
	d.mu.Lock()
	ob := d.m[id]
	var c abi.Codec
	ready := ob != nil && ob.ready
	if ready {
		c = ob.val.Codec
	}
	d.mu.Unlock()
	if ready {
		return c, nil
	}
	meta, err := d.stat(ctx, id)
	if err != nil {
		return 0, d.notFound(id)
	}
	return abi.Codec(meta.Codec), nil
}
