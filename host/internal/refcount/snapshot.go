package refcount

import (
	"slices"

	"github.com/rayhost/rayhost/internal/ids"
)

// Refs is why one object is alive: every kind of reference it has.
type Refs struct {
	ID ids.ObjectID
	// Owner is "" for an object this host owns, else its owner's address.
	Owner string
	// Holders hold local references, with how many each.
	Holders map[Holder]int32
	// Submitted counts unfinished tasks that take it as an argument;
	// Lineage finished ones kept to rebuild their results.
	Submitted, Lineage int32
	// In lists the objects whose values contain it.
	In []ids.ObjectID
	// Borrowers are the hosts that borrow it.
	Borrowers []string
	Sealed    bool
	// Pinned: an uncounted object contains it; it is never freed.
	Pinned bool
}

// Stats counts what the Counter tracks.
type Stats struct {
	Objects  int    // objects counted (owned and borrowed)
	Borrowed int    // of them, borrowed from other hosts
	Holders  int    // holders with at least one reference
	Tasks    int    // tasks whose arguments or lineage are tracked
	Freed    uint64 // Free actions so far
}

// Stats returns the Counter's counts.
func (c *Counter) Stats() Stats {
	s := Stats{Objects: len(c.objs), Holders: len(c.holders), Tasks: len(c.tasks), Freed: c.freed}
	for _, e := range c.objs {
		if e.owner != "" {
			s.Borrowed++
		}
	}
	return s
}

// Snapshot returns why each counted object is alive, by ID.
func (c *Counter) Snapshot() []Refs {
	by := make(map[ids.ObjectID]*Refs, len(c.objs))
	for _, id := range sortedIDs(c.objs) {
		e := c.objs[id]
		by[id] = &Refs{
			ID: id, Owner: e.owner, Submitted: e.submitted, Lineage: e.lineage,
			In: slices.Clone(e.in), Borrowers: slices.Clone(e.borrowers), Sealed: e.sealed, Pinned: e.pinned,
		}
	}
	for h, m := range c.holders {
		for id, n := range m {
			r := by[id]
			if r.Holders == nil {
				r.Holders = map[Holder]int32{}
			}
			r.Holders[h] = n
		}
	}
	out := make([]Refs, 0, len(by))
	for _, id := range sortedIDs(c.objs) {
		out = append(out, *by[id])
	}
	return out
}

// Holds reports how many references h holds to id.
func (c *Counter) Holds(h Holder, id ids.ObjectID) int32 { return c.holders[h][id] }

// Counted reports whether id is counted here (alive, or not yet freed).
func (c *Counter) Counted(id ids.ObjectID) bool { return c.objs[id] != nil }

// Borrowed reports how many objects of this host the host named borrows.
func (c *Counter) Borrowed(host string) int { return len(c.borrowed[host]) }
