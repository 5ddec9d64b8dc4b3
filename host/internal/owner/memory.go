package owner

import (
	"bytes"
	"cmp"
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/host/internal/objdir"
	"github.com/rayhost/rayhost/host/internal/refcount"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// The host's answer to `rayhost memory`: the reference counter's snapshot
// (why each object is alive) joined with the object directory's holdings
// (how large it is, where its bytes are).

// The kinds of reference an object is alive by (ObjectReference.kind).
const (
	refLocal    = "local_ref" // a holder has the ref
	refTaskArg  = "task_arg"  // an unfinished task takes it
	refLineage  = "lineage"   // a finished task kept to rebuild its results takes it
	refInObject = "in_object" // another object's value contains it
	refBorrowed = "borrowed"  // another host borrows it
	refPinned   = "pinned"    // an object nobody counts contains it
)

// The states of a listed object.
const (
	memPending = "pending" // not made yet, or not known here yet
	memReady   = "ready"
	memFailed  = "failed"  // ready, and its value is its task's error
	memMissing = "missing" // counted, but its bytes are nowhere known
)

// memoryEntry is one counted object with what the directory knows of it.
type memoryEntry struct {
	refs    refcount.Refs
	size    int64
	state   string
	where   string
	holders []string
}

// Memory lists the objects the host counts, largest first, up to limit.
func (a api) Memory(ctx context.Context, limit int) (*rayhostv1.MemoryResponse, error) {
	h := a.h
	snap, args, counted := h.refs.memorySnapshot()
	entries := make([]memoryEntry, len(snap))
	for i, r := range snap {
		if i%1024 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		entries[i].refs = r
		if r.Owner == "" && !r.Sealed {
			entries[i].state = memPending // its task has not sealed it: nothing to ask
			continue
		}
		hd, err := h.objs.Holding(ctx, r.ID)
		placeEntry(&entries[i], hd, err)
	}
	res := memoryReport(entries, args, limit, h.objs.Stats(), counted)
	res.HostId, res.Address = h.cfg.ID, h.addr
	return res, nil
}

// memorySnapshot is the counter's snapshot, the tasks that keep
// arguments and its counts, taken at one instant.
func (r *refsRole) memorySnapshot() ([]refcount.Refs, map[ids.ObjectID][]refcount.TaskArg, refcount.Stats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.c.Snapshot(), r.c.TaskArgs(), r.c.Stats()
}

// placeEntry fills in e's state, size and place from what the directory
// holds of it (err: it holds nothing).
func placeEntry(e *memoryEntry, hd objdir.Holding, err error) {
	switch {
	case err != nil && (e.refs.Owner != "" || !e.refs.Sealed):
		e.state = memPending // borrowed, and not resolved here yet
		return
	case err != nil:
		e.state = memMissing
		return
	}
	e.state, e.size = memReady, hd.Size
	if hd.Value.Codec == abi.CodecError {
		e.state = memFailed
	}
	switch {
	case hd.InMemory:
		e.where = "memory"
	case hd.Local:
		e.where = "store"
	case len(hd.Holders) > 0:
		e.where, e.holders = "hosts", hd.Holders
	default:
		e.state = memMissing
	}
}

// stateRank orders states in a listing: ready and failed objects, then
// missing, then pending ones.
func stateRank(s string) int {
	switch s {
	case memMissing:
		return 1
	case memPending:
		return 2
	}
	return 0
}

// memoryReport lists up to limit of entries, largest first, each with its
// references, and sums them all up.
func memoryReport(entries []memoryEntry, args map[ids.ObjectID][]refcount.TaskArg, limit int, dir objdir.Stats, counted refcount.Stats) *rayhostv1.MemoryResponse {
	sum := &rayhostv1.MemorySummary{Objects: uint64(len(entries)), MemoryBytes: dir.MemBytes, Freed: counted.Freed, ByKind: map[string]uint64{},
		UnpersistedBytes: dir.Unpersisted}
	for _, e := range entries {
		r := e.refs
		sum.Bytes += e.size
		if r.Owner != "" {
			sum.Borrowed++
		}
		count := func(kind string, has bool) {
			if has {
				sum.ByKind[kind]++
			}
		}
		count(refLocal, len(r.Holders) > 0)
		count(refTaskArg, r.Submitted > 0)
		count(refLineage, r.Lineage > 0)
		count(refInObject, len(r.In) > 0)
		count(refBorrowed, len(r.Borrowers) > 0)
		count(refPinned, r.Pinned)
	}
	order := make([]int, len(entries))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int {
		a, b := &entries[i], &entries[j]
		if c := cmp.Compare(b.size, a.size); c != 0 {
			return c
		}
		if c := cmp.Compare(stateRank(a.state), stateRank(b.state)); c != 0 {
			return c
		}
		return bytes.Compare(a.refs.ID[:], b.refs.ID[:])
	})
	res := &rayhostv1.MemoryResponse{Summary: sum}
	for _, i := range order[:min(limit, len(order))] {
		e := &entries[i]
		res.Objects = append(res.Objects, &rayhostv1.MemoryObject{ObjectId: e.refs.ID.String(), Owner: e.refs.Owner, SizeBytes: e.size,
			State: e.state, Location: e.where, Holders: e.holders, References: references(e.refs, args[e.refs.ID])})
	}
	sum.Listed = uint64(len(res.Objects))
	return res
}

// references names every reference r has: its holders, the tasks that
// take it (args), the objects that contain it, the hosts that borrow it.
func references(r refcount.Refs, args []refcount.TaskArg) []*rayhostv1.ObjectReference {
	var out []*rayhostv1.ObjectReference
	for _, h := range slices.Sorted(maps.Keys(r.Holders)) {
		out = append(out, &rayhostv1.ObjectReference{Kind: refLocal, By: holderName(h), Count: r.Holders[h]})
	}
	for _, a := range args {
		kind := refTaskArg
		if a.Lineage {
			kind = refLineage
		}
		out = append(out, &rayhostv1.ObjectReference{Kind: kind, By: a.Task.String(), Count: 1})
	}
	for _, in := range r.In {
		out = append(out, &rayhostv1.ObjectReference{Kind: refInObject, By: in.String(), Count: 1})
	}
	for _, b := range r.Borrowers {
		out = append(out, &rayhostv1.ObjectReference{Kind: refBorrowed, By: b, Count: 1})
	}
	if r.Pinned {
		out = append(out, &rayhostv1.ObjectReference{Kind: refPinned, Count: 1})
	}
	return out
}

// holderName is a holder as users read it: an attempt's holder
// ("task:ID/N", attemptHolder) counts attempts from 1, as everywhere
// attempts are shown.
func holderName(h refcount.Holder) string {
	s := string(h)
	rest, ok := strings.CutPrefix(s, "task:")
	if !ok {
		return s
	}
	id, n, ok := strings.Cut(rest, "/")
	a, err := strconv.ParseUint(n, 10, 32)
	if !ok || err != nil {
		return s
	}
	return "task:" + id + "/" + strconv.FormatUint(a+1, 10)
}
