package owner

import (
	"context"
	"fmt"

	"github.com/rayhost/rayhost/host/internal/lifecycle"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// Lineage reconstruction. A result larger than the inline limit stays on
// the host that computed it; if that host dies with the only copy, the
// owner runs the task again (a new attempt, counted against MaxRetries, as
// in Ray) and the object's readers wait for the new value. Its arguments
// are rebuilt the same way first, recursively. A Put object has no task to
// rerun: it is lost (ErrObjectLost).
//
// The owner keeps the finished tasks whose results are held elsewhere
// (h.lineage); small results live in the owner's memory and store and need
// no lineage.

// keepLineageLocked remembers t if one of its results is held by another
// host.
func (ln *lineageRole) keepLineageLocked(t *task, vals []abi.Value) {
	h := ln.o
	if t.kind != abi.KindCall {
		return
	}
	for _, v := range vals {
		if v.Codec == codecHeld {
			h.lineage[t.id] = t
			return
		}
	}
}

// reconstruct rebuilds id, whose every copy is gone, by running its task
// again. It returns once the task is resubmitted (id is then pending), or an
// error wrapping ErrObjectLost when it cannot be rebuilt.
func (ln *lineageRole) reconstruct(id ids.ObjectID) error {
	h := ln.o
	h.mu.Lock()
	t := h.lineage[id.Task()]
	switch {
	case id.IsPut():
		h.mu.Unlock()
		return fmt.Errorf("%w: %s was Put, and its only copies were on hosts that are gone", ErrObjectLost, id)
	case t == nil:
		h.mu.Unlock()
		return fmt.Errorf("%w: %s: its only copies were on hosts that are gone, and its task is not known here", ErrObjectLost, id)
	case h.tasks[t.id] == t:
		h.mu.Unlock()
		return nil // being rebuilt already
	}
	later := h.stepLocked(t, lifecycle.Rebuild{Why: "reconstructing lost object " + id.String()})
	if later == nil {
		h.mu.Unlock()
		return fmt.Errorf("%w: %s: its only copies were on hosts that are gone, and its task has no retries left (MaxRetries %d)", ErrObjectLost, id, t.maxRetries)
	}
	attempt := t.lc.Attempt
	h.mu.Unlock()
	h.log.Info("reconstructing a lost object", "object_id", id, "task_id", t.id, "attempt", attempt)
	for _, r := range t.returns() {
		h.objs.Reset(r) // only those with no copy here
	}
	run(later) // waits for its arguments, rebuilding them too
	return nil
}

// lostHere reports whether a ready object this host owns has no copy left
// on any live host.
func (ln *lineageRole) lostHere(id ids.ObjectID) bool {
	h := ln.o
	hd, err := h.objs.Holding(context.Background(), id)
	if err != nil || hd.InMemory || hd.Local {
		return false
	}
	for _, x := range hd.Holders {
		if !h.rem.peerDown(x) {
			return false
		}
	}
	return len(hd.Holders) > 0 || h.objs.IsHeld(id)
}
