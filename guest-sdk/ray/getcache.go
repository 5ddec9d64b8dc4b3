package ray

import (
	"bytes"

	"github.com/rayhost/rayhost/internal/abi"
)

// The get cache: a small value the host gave a Get is kept with the ref's
// handle, and the next Get of the same object answers from it without
// crossing to the host (a loop that reads a ref again and again, a
// parameter object read by every call of an actor). It is exactly the
// host's answer, because:
//
//   - objects are immutable, and a value is served from the cache only
//     while the handle is counted for the running attempt (or actor): the
//     host keeps the object while it is counted, so it has that value;
//   - Release (and the handle's collection) drops it: a Get after that
//     asks the host, which says whether the object was freed;
//   - failures are not kept (a lost object may be rebuilt), nor values
//     that contain refs or actor handles (decoding one counts a
//     reference, which the host counts only when it sends the value), nor
//     values over getCacheMax;
//   - what a Get returns is a copy: a caller that changes the []byte it
//     got does not change what the next Get returns.
//
// Ray's core worker keeps small objects in an in-process memory store the
// same way.
const getCacheMax = 64 << 10

// cachedValues returns the values of refs if the cache has every one.
func cachedValues(refs []AnyRef) ([]abi.Value, bool) {
	var out []abi.Value
	for i, r := range refs {
		h := r.refHandle()
		if h == nil {
			return nil, false
		}
		v := h.val.Load()
		if v == nil || !counted(h) {
			return nil, false
		}
		if out == nil {
			out = make([]abi.Value, len(refs))
		}
		out[i] = abi.Value{Codec: v.Codec, Data: bytes.Clone(v.Data)}
	}
	return out, true
}

// keepValues caches the values the host gave for refs.
func keepValues(refs []AnyRef, vals []abi.Value) {
	for i, r := range refs {
		h := r.refHandle()
		if h == nil || h.val.Load() != nil {
			continue
		}
		v := vals[i]
		if len(v.Data) > getCacheMax || !cacheable(v) {
			continue
		}
		h.val.Store(&abi.Value{Codec: v.Codec, Data: bytes.Clone(v.Data)})
	}
}

func cacheable(v abi.Value) bool {
	if v.Codec == abi.CodecError || !v.Codec.Valid() {
		return false
	}
	return len(abi.NestedRefs(v)) == 0 && len(abi.NestedActors(v)) == 0
}
