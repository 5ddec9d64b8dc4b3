//go:build wasip1

package ray

import (
	"runtime"
	"sync"
	"weak"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// The live handles by object, and the releases not sent yet.
var refReg = struct {
	sync.Mutex
	live    map[ids.ObjectID]weak.Pointer[handle]
	pending []pendingRelease
}{live: map[ids.ObjectID]weak.Pointer[handle]{}}

type pendingRelease struct {
	id    ids.ObjectID
	epoch epoch
	n     int32
}

// maxPendingReleases sends queued releases at once when this many wait.
const maxPendingReleases = 256

// track returns the handle of a ref to id that the host counted n times
// for the running invocation (n = 0: not counted, as a generator's items).
func track(id ids.ObjectID, n int32) *handle {
	if id.IsZero() {
		return nil
	}
	ep := epochOf(currentTask())
	refReg.Lock()
	defer refReg.Unlock()
	if wp, ok := refReg.live[id]; ok {
		if h := wp.Value(); h != nil {
			if h.c.epoch != ep {
				// Counted for an attempt that has ended: the host dropped
				// those with it.
				h.c.epoch, h.c.n = ep, 0
			}
			h.c.n += n
			return h
		}
	}
	h := &handle{c: &refCount{id: id, epoch: ep, n: n}}
	refReg.live[id] = weak.Make(h)
	runtime.AddCleanup(h, cleanupRef, h.c)
	return h
}

// cleanupRef runs once no ObjectRef holds the handle any more.
func cleanupRef(c *refCount) {
	refReg.Lock()
	if wp, ok := refReg.live[c.id]; ok && wp.Value() == nil {
		delete(refReg.live, c.id)
	}
	if c.n > 0 {
		refReg.pending = append(refReg.pending, pendingRelease{id: c.id, epoch: c.epoch, n: c.n})
		c.n = 0
	}
	refReg.Unlock()
}

func releaseNow(h *handle) {
	h.val.Store(nil) // the next Get asks the host whether it was freed
	refReg.Lock()
	if h.c.n > 0 {
		refReg.pending = append(refReg.pending, pendingRelease{id: h.c.id, epoch: h.c.epoch, n: h.c.n})
		h.c.n = 0
	}
	refReg.Unlock()
	flushReleases(true)
}

// takeReleases returns the encoded release request for the running
// invocation, or nil; releases counted for an earlier attempt are dropped
// (the host released them when it ended). Unless force, it waits until
// enough are queued.
func takeReleases(force bool) []byte {
	refReg.Lock()
	defer refReg.Unlock()
	if len(refReg.pending) == 0 || (!force && len(refReg.pending) < maxPendingReleases) {
		return nil
	}
	ep := epochOf(currentTask())
	var req abi.ReleaseRequest
	for _, p := range refReg.pending {
		if p.epoch == ep {
			req.IDs = append(req.IDs, p.id)
			req.Counts = append(req.Counts, uint32(p.n))
		}
	}
	refReg.pending = refReg.pending[:0]
	if len(req.IDs) == 0 {
		return nil
	}
	return req.Encode(nil)
}

// flushReleases sends queued releases (pipelined: the host does not
// answer). A host that does not know the op (-4) is ignored.
func flushReleases(force bool) {
	if b := takeReleases(force); b != nil {
		_, _ = hostCall(abi.OpRelease, b)
	}
}

// counted reports whether h holds references the host counts for the
// running invocation: while it does, the host keeps the object.
func counted(h *handle) bool {
	ep := epochOf(currentTask())
	refReg.Lock()
	defer refReg.Unlock()
	return h.c.n > 0 && h.c.epoch == ep
}
