package objdir

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

// Copies of objects on hosts other than their owner, and how they go when
// the object is freed.
//
// A host keeps bytes of another host's object in three ways: it holds the
// value for its owner (a large result or put of a task it ran for that
// host: [Dir.SealFor]), it pulled a copy (an argument, a Get), or it
// sealed the small value its owner sent inline (a borrowed ref resolved).
// Each such copy is recorded here with its owner (in the table and in the
// store's metadata), and the owner's Dir records which hosts may hold one:
// the holders of a held value, the hosts that pulled it (AddLocation) and
// those it answered Locate for ([Dir.AddCopy]).
//
// When the owner frees the object, its Dir sends those hosts FreeCopies
// (Peers.FreeCopies), batched per host, in the background; each deletes
// its copy ([Dir.OwnerFreed]) unless something there still counts the
// object (a borrow not yet released), and only if the sender is the owner
// it recorded. A host that stops borrowing an object drops its copy itself
// ([Dir.DropCopy]).

// maxCopyHosts bounds the hosts recorded per object: in a larger
// cluster, copies beyond it stay until their hosts drop them (a borrow's
// release).
const maxCopyHosts = 64

// freeBatch is the most IDs one FreeCopies call carries.
const freeBatch = 4096

// SealFor seals a value this host keeps for owner (the host at that
// address owns id): a large result or put of a task it runs for owner. The
// copy is recorded as owner's, so owner's FreeCopies deletes it.
func (d *Dir) SealFor(ctx context.Context, id ids.ObjectID, owner string, v abi.Value) error {
	d.mu.Lock()
	ob := d.m[id]
	if ob == nil {
		ob = &object{task: id.Task()}
		d.m[id] = ob
	}
	if owner != d.cfg.Self && !ob.ready {
		ob.owner, ob.keptFor = owner, true
	}
	d.mu.Unlock()
	return d.Seal(ctx, id, v)
}

// ownerOfLocked is the owner recorded for id in the table ("" if this
// host, or if id is not in the table).
func (d *Dir) ownerOfLocked(id ids.ObjectID) string {
	if ob := d.m[id]; ob != nil {
		return ob.owner
	}
	return ""
}

// AddCopy records that the host at addr may keep a copy of id, an object
// of this host's (it pulled it, or was answered its value inline): it is
// told when id is freed. Unknown objects and this host are skipped.
func (d *Dir) AddCopy(id ids.ObjectID, addr string) {
	if addr == "" || addr == d.cfg.Self {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if ob := d.m[id]; ob != nil && ob.owner != "" {
		return // not this host's: its owner keeps the record
	}
	cs := d.copies[id]
	if len(cs) < maxCopyHosts && !slices.Contains(cs, addr) {
		d.copies[id] = append(cs, addr)
	}
}

// Copies returns the hosts recorded as keeping a copy of id (AddCopy, and
// the holders of a held value).
func (d *Dir) Copies(id ids.ObjectID) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.copyHostsLocked(id, d.m[id])
}

func (d *Dir) copyHostsLocked(id ids.ObjectID, ob *object) []string {
	out := slices.Clone(d.copies[id])
	if ob != nil && ob.owner == "" {
		for _, x := range ob.holders {
			if x != d.cfg.Self && !slices.Contains(out, x) {
				out = append(out, x)
			}
		}
	}
	return out
}

// queueFreeLocked queues FreeCopies of id to the hosts that may hold a
// copy, and forgets them. Called by Free with the lock held.
func (d *Dir) queueFreeLocked(id ids.ObjectID, ob *object) {
	hosts := d.copyHostsLocked(id, ob)
	delete(d.copies, id)
	for _, x := range hosts {
		d.toFree[x] = append(d.toFree[x], id)
	}
}

// sendFrees sends the queued FreeCopies in the background, one sender at a
// time, per host in batches of freeBatch. A host that cannot be reached
// keeps its copies (they are not sent again).
func (d *Dir) sendFrees() {
	d.mu.Lock()
	if d.freeing || len(d.toFree) == 0 || d.remote.peers == nil {
		if d.remote.peers == nil {
			clear(d.toFree)
		}
		d.mu.Unlock()
		return
	}
	d.freeing = true
	d.mu.Unlock()
	d.remote.goBackground(func(ctx context.Context) {
		for {
			d.mu.Lock()
			batch := d.toFree
			d.toFree = map[string][]ids.ObjectID{}
			if len(batch) == 0 || ctx.Err() != nil {
				d.freeing = false
				d.mu.Unlock()
				return
			}
			d.mu.Unlock()
			for _, host := range sortedHosts(batch) {
				objs := batch[host]
				for len(objs) > 0 {
					n := min(len(objs), freeBatch)
					cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					err := d.remote.peers.FreeCopies(cctx, host, objs[:n])
					cancel()
					if err != nil {
						d.log.Debug("telling a host to free its copies", "host", host, "objects", n, "err", err)
					}
					objs = objs[n:]
				}
			}
		}
	})
}

func sortedHosts(m map[string][]ids.ObjectID) []string {
	out := make([]string, 0, len(m))
	for h := range m {
		out = append(out, h)
	}
	slices.Sort(out)
	return out
}

// OwnerFreed serves FreeCopies: owner freed objs, and this host deletes its
// copies of them. A copy is deleted only if owner is the owner recorded
// with it (a host cannot free another host's objects, nor this host's
// own), and not while inUse says something here still counts it (nil:
// nothing does); a read of a deleted copy then says the object was freed.
// It returns how many copies it deleted.
func (d *Dir) OwnerFreed(ctx context.Context, owner string, objs []ids.ObjectID, inUse func(ids.ObjectID) bool) int {
	var drop []ids.ObjectID
	for _, id := range objs {
		if owner == "" || owner == d.cfg.Self || (inUse != nil && inUse(id)) {
			continue
		}
		if d.recordedOwner(ctx, id) == owner {
			drop = append(drop, id)
		}
	}
	d.dropCopies(drop, true)
	return len(drop)
}

// DropCopy deletes this host's copies of objs, objects of other hosts it
// no longer borrows (nothing here counts them any more). Objects of its
// own are skipped, and so are values it keeps for their owner (SealFor:
// its bytes may be the only ones), including a large value in the store
// that the table does not know (kept before a restart, maybe). The owner
// still has the objects: a later read asks it again.
func (d *Dir) DropCopy(ctx context.Context, objs []ids.ObjectID) {
	var drop []ids.ObjectID
	for _, id := range objs {
		d.mu.Lock()
		ob := d.m[id]
		known, kept := ob != nil, ob != nil && ob.keptFor
		d.mu.Unlock()
		if kept {
			continue
		}
		if known {
			if o := d.recordedOwner(ctx, id); o != "" && o != d.cfg.Self {
				drop = append(drop, id)
			}
			continue
		}
		if meta, err := d.stat(ctx, id); err == nil && meta.Owner != d.cfg.Self && meta.Size <= int64(d.cfg.InlineLimit) {
			drop = append(drop, id)
		}
	}
	d.dropCopies(drop, false)
}

// recordedOwner is the owner recorded with id here: the table's, else the
// store's ("" if neither knows it, or this host owns it).
func (d *Dir) recordedOwner(ctx context.Context, id ids.ObjectID) string {
	d.mu.Lock()
	o := d.ownerOfLocked(id)
	d.mu.Unlock()
	if o != "" {
		return o
	}
	meta, err := d.stat(ctx, id)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			d.log.Debug("reading whose a copy is", "object_id", id, "err", err)
		}
		return ""
	}
	if meta.Owner == d.cfg.Self {
		return ""
	}
	return meta.Owner
}

// dropCopies forgets objs here and deletes their bytes from the store
// (behind, like Free). tombstone: a read then says freed (the owner freed
// them); else it asks the owner again.
func (d *Dir) dropCopies(objs []ids.ObjectID, tombstone bool) {
	if len(objs) == 0 {
		return
	}
	d.mu.Lock()
	for _, id := range objs {
		if tombstone {
			d.freed.add(id)
		}
		d.deleting[id]++
		if ob := d.m[id]; ob != nil {
			if !ob.ready {
				ob.freed = true // dropped by seal
			} else {
				d.dropLocked(id, ob)
			}
		}
	}
	d.dropped += uint64(len(objs))
	d.mu.Unlock()
	for _, id := range objs {
		d.hand(persistJob{id: id, del: true})
	}
}

// Freed reports whether id, an object of this host's, was freed lately
// (its tombstone is there).
func (d *Dir) Freed(id ids.ObjectID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.freed.has(id)
}

// OwnerFreedHere records that the owner of objs (objects of other hosts
// this host borrowed) had freed them before this host's borrow reached
// it: a wait for one ends with object_freed, a read says freed, and the
// copies here go.
func (d *Dir) OwnerFreedHere(objs []ids.ObjectID) {
	for _, id := range objs {
		d.mu.Lock()
		ob := d.m[id]
		pending := ob != nil && !ob.ready
		d.mu.Unlock()
		if pending {
			if err := d.Seal(context.Background(), id, freedValue(id, freedErr(id))); err != nil {
				d.log.Debug("sealing a freed borrow", "object_id", id, "err", err)
			}
		}
	}
	d.dropCopies(objs, true)
}
