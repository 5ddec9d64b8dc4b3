package objdir

import (
	"context"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// Provisional failures. Some failures are about where an object is, not
// what it is, and stop being true when the cluster heals: its owner could
// not be reached (owner_died while it is down), or its owner said every
// copy is gone (object_lost while the hosts holding it are down). A
// borrower that got one seals it provisionally: its waiters get it, but it
// is kept in memory only (a restart forgets it), and the next Borrow of
// the object asks the owner again once the owner is not down. An owner
// never caches such an answer: it works it out again on every Get and
// Locate (holders that are down are kept, and tried once they are back).
//
// A failure is the object's value, sealed for good, when it is: the task's
// own failure, or its owner saying it has no record of it after a restart
// (owner_died that no longer changes).

// provisional reports whether v, an owner's answer about a borrowed
// object, says where the object is rather than what it is.
func provisional(v abi.Value) bool {
	if v.Codec != abi.CodecError {
		return false
	}
	k := abi.DecodeTaskError(v.Data).Kind
	return k == abi.ErrorObjectLost || k == abi.ErrorOwnerDied
}

// sealProvisional makes a pending borrowed object ready with the failure
// v, provisionally: in memory only (counted in memBytes, never evicted:
// reask or Free drops it), and it wakes the waiters. A freed object keeps
// nothing.
func (d *Dir) sealProvisional(id ids.ObjectID, v abi.Value) {
	d.mu.Lock()
	ob := d.m[id]
	if ob == nil || ob.ready {
		d.mu.Unlock()
		return
	}
	ob.ready, ob.val, ob.inMemory, ob.provisional = true, v, true, true
	d.memBytes += memCost(v.Data)
	if ob.freed {
		d.dropLocked(id, ob)
	}
	live := liveWaiters(ob)
	d.mu.Unlock()
	for _, w := range live {
		w.fn(v)
	}
}

// reask forgets a provisional failure of id whose owner is not down, and
// asks the owner again in the background: the object is pending until it
// answers. It does nothing for any other object.
func (d *Dir) reask(id ids.ObjectID) {
	d.mu.Lock()
	owner := ""
	if ob := d.m[id]; ob != nil && ob.provisional {
		owner = ob.owner
	}
	d.mu.Unlock()
	if owner == "" || d.remote.peers == nil || d.remote.peers.Down(owner) {
		return
	}
	d.mu.Lock()
	ob := d.m[id]
	if ob == nil || !ob.provisional {
		d.mu.Unlock()
		return // asked again already
	}
	d.memBytes -= memCost(ob.val.Data)
	ob.ready, ob.val, ob.inMemory, ob.provisional = false, abi.Value{}, false, false
	d.mu.Unlock()
	d.log.Debug("asking an owner again about an object it could not give", "object_id", id, "owner", owner)
	d.remote.goBackground(func(ctx context.Context) { d.remote.resolve(ctx, id, owner) })
}
