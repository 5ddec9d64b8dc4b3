package refcount

import (
	"slices"

	"github.com/rayhost/rayhost/internal/ids"
)

// Actor handles are counted as references to an object derived from the
// actor's ID (abi.ActorRef: its creation's return), so borrowing, nesting
// and release work for them as for any ref, and the owner kills the actor
// when that object is freed. A handle is a capability, though: where an
// ObjectRef found inside a value counts for whoever reads it, a handle
// counts only if it came by a path the Counter already counted — the
// creator's return, a task argument its submitter held, a value whose
// producer held it. The queries below are what the owner checks that with.

// HasArg reports whether task (submitted here, not yet forgotten) keeps id
// alive as one of its arguments.
func (c *Counter) HasArg(task ids.TaskID, id ids.ObjectID) bool {
	rec := c.tasks[task]
	return rec != nil && slices.Contains(rec.args, id)
}

// Contains reports whether the live object obj's value was counted as
// containing x.
func (c *Counter) Contains(obj, x ids.ObjectID) bool {
	e := c.objs[obj]
	return e != nil && slices.Contains(e.contains, x)
}

// Contain records, after Sealed, that the live object obj contains x too
// (an actor handle its producer held): x stays alive as long as obj. It
// reports false when either is not counted (obj already freed, say).
func (c *Counter) Contain(obj, x ids.ObjectID) bool {
	e, xe := c.objs[obj], c.objs[x]
	if e == nil || xe == nil || obj == x {
		return false
	}
	if !slices.Contains(e.contains, x) {
		e.contains = append(e.contains, x)
		xe.in = append(xe.in, obj)
	}
	return true
}

// AddArg records that task, submitted here and not yet ended, keeps x
// alive as an argument too (an actor handle inside an inline argument its
// submitter held, or the actor a method call runs on), until TaskEnded. It
// reports false when either is not counted.
func (c *Counter) AddArg(task ids.TaskID, x ids.ObjectID) bool {
	rec, e := c.tasks[task], c.objs[x]
	if rec == nil || e == nil || rec.ended {
		return false
	}
	if !slices.Contains(rec.args, x) {
		rec.args = append(rec.args, x)
		e.submitted++
	}
	return true
}
