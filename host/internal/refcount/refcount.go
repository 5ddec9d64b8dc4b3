// Package refcount is the host's reference counter: it knows, for every
// object the host owns (and every object of another host it borrows), who
// still holds a reference to it, and says when nobody does any more.
//
// It follows Ray's ownership-based distributed reference counting. An
// object stays alive while any of these hold it:
//
//   - a local reference: a Holder (a running task attempt, an actor, a
//     client session) that got the ref — the return of a task it
//     submitted, a Put, a ref inside a value it read;
//   - a submitted task that takes it as an argument, until the task has
//     ended (every retry included);
//   - lineage: a finished task whose results may have to be rebuilt keeps
//     its arguments until those results are freed;
//   - another object whose value contains the ref (nested refs), until that
//     object is freed;
//   - another host that borrows it (it read the ref and registered with
//     this host, the owner), until that host releases it or dies.
//
// The Counter is a deterministic core, like host/internal/lifecycle: no
// goroutines, clocks, locks or I/O. Its methods take events and return
// Actions for the caller to carry out: free an object's bytes, tell an
// owner that a borrow ended, forget a task's lineage. The owner role
// (host/internal/owner) is its shell and guards it with its lock.
//
// An object the Counter never heard of is never freed: objects are
// counted from the event that creates them (Create), so a host keeps what
// it cannot account for rather than free what someone may still read.
package refcount

import (
	"bytes"
	"slices"

	"github.com/rayhost/rayhost/internal/ids"
)

// Holder names who holds local references: a task attempt, an actor, a
// client session. The owner makes the names; the Counter only compares
// them.
type Holder string

// ActionKind is what an Action asks for.
type ActionKind uint8

const (
	// Free: an object this host owns has no reference left anywhere; drop
	// its bytes from memory and the store. Reading it later is
	// ErrObjectFreed.
	Free ActionKind = iota + 1
	// ReleaseBorrow: nothing here references an object of another host
	// any more; drop the local copy and tell Owner this host no longer
	// borrows it.
	ReleaseBorrow
	// ForgetLineage: every result of Task is freed; its lineage (the task
	// kept to rebuild lost results) is not needed any more.
	ForgetLineage
)

func (k ActionKind) String() string {
	switch k {
	case Free:
		return "free"
	case ReleaseBorrow:
		return "release_borrow"
	case ForgetLineage:
		return "forget_lineage"
	}
	return "unknown"
}

// Action is what the caller must do after an event.
type Action struct {
	Kind  ActionKind
	ID    ids.ObjectID // Free, ReleaseBorrow
	Owner string       // ReleaseBorrow: the owner to tell
	Task  ids.TaskID   // ForgetLineage
}

// entry is what is known of one object's references.
type entry struct {
	// owner is "" for an object this host owns, else the owner's address
	// (a borrowed object).
	owner     string
	local     int32          // references held by holders (sum over them)
	submitted int32          // unfinished tasks taking it as an argument
	lineage   int32          // finished tasks kept for lineage taking it
	in        []ids.ObjectID // live objects whose values contain it
	borrowers []string       // hosts that borrow it (owned objects only)
	contains  []ids.ObjectID // the refs its own value contains (Seal)
	sealed    bool
	// pinned: an object the Counter does not count contains it, so it is
	// never freed.
	pinned bool
}

func (e *entry) referenced() bool {
	return e.local > 0 || e.submitted > 0 || e.lineage > 0 || len(e.in) > 0 || len(e.borrowers) > 0 || e.pinned
}

// taskRec is a task submitted here, for as long as it (or its lineage)
// keeps its arguments.
type taskRec struct {
	args []ids.ObjectID
	// ended: the task is finished; keep: its lineage is kept, so its
	// arguments stay until its results (live) are all freed.
	ended, keep bool
	live        int32 // its counted return objects not yet freed
}

// Counter counts references. The zero value is not usable: call New.
type Counter struct {
	objs    map[ids.ObjectID]*entry
	holders map[Holder]map[ids.ObjectID]int32
	tasks   map[ids.TaskID]*taskRec
	// borrowed: per borrowing host, the objects it borrows from here.
	borrowed map[string]map[ids.ObjectID]struct{}
	// freed counts Free actions (for stats).
	freed uint64
}

// New returns an empty Counter.
func New() *Counter {
	return &Counter{
		objs:     map[ids.ObjectID]*entry{},
		holders:  map[Holder]map[ids.ObjectID]int32{},
		tasks:    map[ids.TaskID]*taskRec{},
		borrowed: map[string]map[ids.ObjectID]struct{}{},
	}
}

// Create counts a new object this host owns (a Put, or a return of a
// task that takes no argument by reference), held once by h. A known object
// gets one more reference from h.
func (c *Counter) Create(h Holder, id ids.ObjectID) {
	if c.objs[id] == nil {
		c.objs[id] = &entry{}
		if rec := c.tasks[id.Task()]; rec != nil && !id.IsPut() {
			rec.live++
		}
	}
	c.hold(h, id, 1)
}

// Add records that h got n more references to id (a ref it read inside a
// value, say). owner is the object's owner's address, "" if this host
// owns it. An unknown object of another host starts a borrow here; an
// unknown object of this host is not counted (it was freed, or never
// existed: Add cannot revive it) and Add reports false.
func (c *Counter) Add(h Holder, id ids.ObjectID, owner string, n int32) bool {
	if n <= 0 {
		return c.objs[id] != nil
	}
	if c.objs[id] == nil {
		if owner == "" {
			return false
		}
		c.objs[id] = &entry{owner: owner}
	}
	c.hold(h, id, n)
	return true
}

func (c *Counter) hold(h Holder, id ids.ObjectID, n int32) {
	m := c.holders[h]
	if m == nil {
		m = map[ids.ObjectID]int32{}
		c.holders[h] = m
	}
	m[id] += n
	c.objs[id].local += n
}

// Release drops n of h's references to id (at most as many as h holds).
// Releasing what h does not hold does nothing: nobody can release another
// holder's references.
func (c *Counter) Release(h Holder, id ids.ObjectID, n int32) []Action {
	m := c.holders[h]
	have := m[id]
	if have == 0 || n <= 0 {
		return nil
	}
	n = min(n, have)
	if have == n {
		delete(m, id)
		if len(m) == 0 {
			delete(c.holders, h)
		}
	} else {
		m[id] = have - n
	}
	e := c.objs[id]
	e.local -= n
	return c.check(nil, id, e)
}

// DropHolder releases every reference h holds: its attempt ended, its
// actor died, its session closed or expired.
func (c *Counter) DropHolder(h Holder) []Action {
	m := c.holders[h]
	if m == nil {
		return nil
	}
	delete(c.holders, h)
	var out []Action
	for _, id := range sortedIDs(m) {
		e := c.objs[id]
		e.local -= m[id]
		out = c.check(out, id, e)
	}
	return out
}

// Submit records a task submitted here by h: its returns are new objects
// held once each by h, and the args it takes by reference stay alive until
// TaskEnded (args not counted here — another host's, or uncounted — are
// skipped). Submitting a known task again (a retry) does nothing.
func (c *Counter) Submit(h Holder, task ids.TaskID, returns, args []ids.ObjectID) {
	if c.tasks[task] == nil {
		rec := &taskRec{}
		for _, id := range args {
			if e := c.objs[id]; e != nil && !slices.Contains(rec.args, id) {
				e.submitted++
				rec.args = append(rec.args, id)
			}
		}
		c.tasks[task] = rec
	}
	for _, id := range returns {
		c.Create(h, id)
	}
}

// TaskEnded records that task finished for good. With keepLineage (one of
// its results is held only on other hosts, so it may have to run again),
// its arguments stay alive until its results are all freed; otherwise
// they are released now.
func (c *Counter) TaskEnded(task ids.TaskID, keepLineage bool) []Action {
	rec := c.tasks[task]
	if rec == nil || rec.ended {
		return nil
	}
	rec.ended = true
	if keepLineage && rec.live > 0 {
		rec.keep = true
		for _, id := range rec.args {
			e := c.objs[id]
			e.submitted--
			e.lineage++
		}
		return nil
	}
	delete(c.tasks, task)
	var out []Action
	for _, id := range rec.args {
		e := c.objs[id]
		e.submitted--
		out = c.check(out, id, e)
	}
	return out
}

// Rebuilding records that a finished task runs again to rebuild a lost
// result: its arguments count as submitted again until TaskEnded.
func (c *Counter) Rebuilding(task ids.TaskID) {
	rec := c.tasks[task]
	if rec == nil || !rec.ended {
		return
	}
	rec.ended = false
	if rec.keep {
		rec.keep = false
		for _, id := range rec.args {
			e := c.objs[id]
			e.lineage--
			e.submitted++
		}
	}
}

// Sealed records that id's value is ready and contains the refs contains
// (nested refs, counted once each): they stay alive as long as id does.
// An object nobody references by the time it is sealed is freed at once.
// Contained refs unknown here are skipped. The refs inside an object the
// Counter does not count are pinned: nobody can say when that object
// goes, so they stay.
func (c *Counter) Sealed(id ids.ObjectID, contains []ids.ObjectID) []Action {
	e := c.objs[id]
	if e == nil {
		for _, x := range contains {
			if xe := c.objs[x]; xe != nil {
				xe.pinned = true
			}
		}
		return nil
	}
	if e.sealed {
		return nil
	}
	e.sealed = true
	for _, x := range contains {
		if xe := c.objs[x]; xe != nil && x != id && !slices.Contains(e.contains, x) {
			e.contains = append(e.contains, x)
			xe.in = append(xe.in, id)
		}
	}
	return c.check(nil, id, e)
}

// AddBorrower records that host borrows id, which this host owns. It
// reports false for an object not counted here (freed, or never counted).
func (c *Counter) AddBorrower(id ids.ObjectID, host string) bool {
	e := c.objs[id]
	if e == nil || e.owner != "" {
		return false
	}
	if !slices.Contains(e.borrowers, host) {
		e.borrowers = append(e.borrowers, host)
		m := c.borrowed[host]
		if m == nil {
			m = map[ids.ObjectID]struct{}{}
			c.borrowed[host] = m
		}
		m[id] = struct{}{}
	}
	return true
}

// ReleaseBorrower records that host no longer borrows id.
func (c *Counter) ReleaseBorrower(id ids.ObjectID, host string) []Action {
	e := c.objs[id]
	if e == nil || !slices.Contains(e.borrowers, host) {
		return nil
	}
	e.borrowers = slices.DeleteFunc(e.borrowers, func(s string) bool { return s == host })
	if m := c.borrowed[host]; m != nil {
		delete(m, id)
		if len(m) == 0 {
			delete(c.borrowed, host)
		}
	}
	return c.check(nil, id, e)
}

// HostGone records that host left the cluster or failed: every borrow it
// held is released (a dead borrower holds nothing).
func (c *Counter) HostGone(host string) []Action {
	m := c.borrowed[host]
	delete(c.borrowed, host)
	var out []Action
	for _, id := range sortedIDs(m) {
		e := c.objs[id]
		e.borrowers = slices.DeleteFunc(e.borrowers, func(s string) bool { return s == host })
		out = c.check(out, id, e)
	}
	return out
}

// check frees e (id) if nothing references it any more, and whatever that
// releases in turn, appending the actions to out.
func (c *Counter) check(out []Action, id ids.ObjectID, e *entry) []Action {
	work := []ids.ObjectID{id}
	for len(work) > 0 {
		id, work = work[len(work)-1], work[:len(work)-1]
		e = c.objs[id]
		if e == nil || e.referenced() {
			continue
		}
		// An unsealed object of this host with no refs is freed too: its
		// value is dropped when it comes (the owner keeps a tombstone).
		delete(c.objs, id)
		if e.owner != "" {
			out = append(out, Action{Kind: ReleaseBorrow, ID: id, Owner: e.owner})
		} else {
			c.freed++
			out = append(out, Action{Kind: Free, ID: id})
		}
		for _, x := range e.contains {
			if xe := c.objs[x]; xe != nil {
				xe.in = slices.DeleteFunc(xe.in, func(y ids.ObjectID) bool { return y == id })
				work = append(work, x)
			}
		}
		if e.owner != "" || id.IsPut() {
			continue
		}
		rec := c.tasks[id.Task()]
		if rec == nil {
			continue
		}
		rec.live--
		if rec.live > 0 || !rec.ended {
			continue
		}
		delete(c.tasks, id.Task())
		if rec.keep {
			out = append(out, Action{Kind: ForgetLineage, Task: id.Task()})
		}
		for _, a := range rec.args {
			ae := c.objs[a]
			if ae == nil {
				continue
			}
			if rec.keep {
				ae.lineage--
			} else {
				ae.submitted--
			}
			work = append(work, a)
		}
	}
	return out
}

func sortedIDs[V any](m map[ids.ObjectID]V) []ids.ObjectID {
	out := make([]ids.ObjectID, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	slices.SortFunc(out, func(a, b ids.ObjectID) int { return bytes.Compare(a[:], b[:]) })
	return out
}
