// Package ids defines the identifiers of tasks and objects.
//
// A TaskID is 16 bytes. The ObjectIDs a task returns are derived from it, so
// a submitter knows its return ObjectIDs without a round trip:
//
//	ObjectID = TaskID (16 bytes) || index (uint32, big endian)
//
// Return i of a task has index i+1; objects made by Put have the high bit of
// the index set (PutIndexFlag) and a per-task counter below it. A generator
// task's completion object (Completion) has the highest index below the put
// range. Index 0 is never used, so the zero ObjectID is invalid.
//
// Child task IDs are derived from the parent's TaskID, the parent's
// attempt and a per-attempt counter (ChildOf), so a retried parent submits
// new children and never reads the results of its previous attempt's. The
// guest computes them, so that it holds its refs without a round trip; the
// host verifies each one with Children: a task can create IDs only in its
// own space, never in another task's.
package ids

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

const (
	// TaskIDSize is the length of a TaskID in bytes.
	TaskIDSize = 16
	// ObjectIDSize is the length of an ObjectID in bytes.
	ObjectIDSize = TaskIDSize + 4
	// PutIndexFlag marks the index of an object made by Put.
	PutIndexFlag = uint32(1) << 31
	// CompletionIndex is the index of a generator task's completion
	// object: above every return or item index, below the put range.
	CompletionIndex = PutIndexFlag - 1
)

// ErrInvalidID is returned when bytes or text do not form an ID.
var ErrInvalidID = errors.New("ids: invalid id")

// TaskID identifies one task (all of its attempts).
type TaskID [TaskIDSize]byte

// ObjectID identifies one immutable object.
type ObjectID [ObjectIDSize]byte

// NewTaskID returns a random TaskID, for tasks with no parent task.
func NewTaskID() TaskID {
	var t TaskID
	_, _ = rand.Read(t[:]) // crypto/rand.Read never fails on supported platforms
	return t
}

// ChildOf returns the TaskID of the n-th task submitted by attempt a of t
// (attempts count from 0). Attempt 0's children are Child(n).
func (t TaskID) ChildOf(a uint32, n uint64) TaskID {
	if a == 0 {
		return t.Child(n)
	}
	var buf [TaskIDSize + 12]byte
	copy(buf[:], t[:])
	binary.BigEndian.PutUint64(buf[TaskIDSize:], n)
	binary.BigEndian.PutUint32(buf[TaskIDSize+8:], a)
	sum := sha256.Sum256(buf[:])
	var c TaskID
	copy(c[:], sum[:TaskIDSize])
	return c
}

// Child returns the TaskID of the n-th task submitted by t's first attempt
// (and, before ChildOf, by every attempt).
func (t TaskID) Child(n uint64) TaskID {
	var buf [TaskIDSize + 8]byte
	copy(buf[:], t[:])
	binary.BigEndian.PutUint64(buf[TaskIDSize:], n)
	sum := sha256.Sum256(buf[:])
	var c TaskID
	copy(c[:], sum[:TaskIDSize])
	return c
}

// Return is the ObjectID of the task's i-th return value (0-based).
func (t TaskID) Return(i int) ObjectID {
	return t.object(uint32(i) + 1)
}

// Put is the ObjectID of the n-th object the task put (0-based).
func (t TaskID) Put(n uint32) ObjectID {
	return t.object(PutIndexFlag | n)
}

// Completion is the ObjectID of a generator task's completion object: its
// value exists once the generator has ended (null, or the generator's
// failure), as Ray's ObjectRefGenerator.completed().
func (t TaskID) Completion() ObjectID {
	return t.object(CompletionIndex)
}

// IsCompletion reports whether o is a generator task's completion object.
func (o ObjectID) IsCompletion() bool { return o.Index() == CompletionIndex }

func (t TaskID) object(index uint32) ObjectID {
	var o ObjectID
	copy(o[:], t[:])
	binary.BigEndian.PutUint32(o[TaskIDSize:], index)
	return o
}

// IsZero reports whether t is the zero TaskID.
func (t TaskID) IsZero() bool { return t == TaskID{} }

func (t TaskID) String() string { return hex.EncodeToString(t[:]) }

// Task returns the TaskID of the task that created o.
func (o ObjectID) Task() TaskID {
	var t TaskID
	copy(t[:], o[:TaskIDSize])
	return t
}

// Index is the raw index part of o.
func (o ObjectID) Index() uint32 { return binary.BigEndian.Uint32(o[TaskIDSize:]) }

// IsPut reports whether o was made by Put.
func (o ObjectID) IsPut() bool { return o.Index()&PutIndexFlag != 0 }

// ReturnIndex is the 0-based return index of o, or -1 for a Put object.
func (o ObjectID) ReturnIndex() int {
	if o.IsPut() {
		return -1
	}
	return int(o.Index()) - 1
}

// IsZero reports whether o is the zero (invalid) ObjectID.
func (o ObjectID) IsZero() bool { return o == ObjectID{} }

func (o ObjectID) String() string { return hex.EncodeToString(o[:]) }

// ParseObjectID parses the hex form of an ObjectID.
func ParseObjectID(s string) (ObjectID, error) {
	var o ObjectID
	if len(s) != 2*ObjectIDSize {
		return o, fmt.Errorf("%w: object id %q: want %d hex digits", ErrInvalidID, s, 2*ObjectIDSize)
	}
	if _, err := hex.Decode(o[:], []byte(s)); err != nil {
		return o, fmt.Errorf("%w: object id %q: %v", ErrInvalidID, s, err)
	}
	if o.Index() == 0 {
		return o, fmt.Errorf("%w: object id %q: index 0", ErrInvalidID, s)
	}
	return o, nil
}

// ParseTaskID parses the hex form of a TaskID.
func ParseTaskID(s string) (TaskID, error) {
	var t TaskID
	if len(s) != 2*TaskIDSize {
		return t, fmt.Errorf("%w: task id %q: want %d hex digits", ErrInvalidID, s, 2*TaskIDSize)
	}
	if _, err := hex.Decode(t[:], []byte(s)); err != nil {
		return t, fmt.Errorf("%w: task id %q: %v", ErrInvalidID, s, err)
	}
	return t, nil
}

// ObjectIDFromBytes converts a byte slice to an ObjectID.
func ObjectIDFromBytes(b []byte) (ObjectID, error) {
	var o ObjectID
	if len(b) != ObjectIDSize {
		return o, fmt.Errorf("%w: object id of %d bytes", ErrInvalidID, len(b))
	}
	copy(o[:], b)
	return o, nil
}

// ChildWindow is how far out of order a task's submissions may arrive: a
// child ID is accepted if its counter was not used by this attempt and is
// at most ChildWindow below the highest accepted so far, or at most
// ChildMaxGap above it (counters the guest used for submits its worker
// refused never reach the host and leave gaps).
const (
	ChildWindow = 256
	ChildMaxGap = 4096
)

// Children checks the child TaskIDs one attempt of a task submits: each must
// be parent.ChildOf(attempt, n) for a counter n not yet used, so a guest
// cannot claim IDs that belong to another task. On attempts after the first
// it also takes parent.Child(n), the IDs guests built before ChildOf
// derive on every attempt (their retries then resubmit the first attempt's
// children, which the host already has). It is not safe for concurrent use.
type Children struct {
	parent  TaskID
	attempt uint32
	next    uint64            // counters below next have been derived
	high    uint64            // 1 + the highest counter accepted (0: none)
	pending map[TaskID]uint64 // derived, not yet used
}

// NewChildren starts checking the children of attempt a of parent.
func NewChildren(parent TaskID, a uint32) *Children {
	c := &Children{parent: parent, attempt: a, pending: make(map[TaskID]uint64, ChildWindow)}
	c.derive(ChildWindow)
	return c
}

func (c *Children) derive(to uint64) {
	for ; c.next < to; c.next++ {
		c.pending[c.parent.ChildOf(c.attempt, c.next)] = c.next
		if c.attempt > 0 {
			c.pending[c.parent.Child(c.next)] = c.next
		}
	}
}

// is reports whether id is child k of the attempt (or, after the first
// attempt, the legacy child k).
func (c *Children) is(id TaskID, k uint64) bool {
	return c.parent.ChildOf(c.attempt, k) == id || (c.attempt > 0 && c.parent.Child(k) == id)
}

// Claim reports whether id is the parent's next child (or one within the
// window) and, if so, uses it up and returns its counter.
func (c *Children) Claim(id TaskID) (uint64, bool) {
	n, ok := c.pending[id]
	if !ok {
		// Past the derived window: look further ahead, up to ChildMaxGap
		// (one search per miss; a guest that misses is failed anyway).
		for k := c.next; k < c.high+ChildMaxGap; k++ {
			if c.is(id, k) {
				c.next, n, ok = k+1, k, true
				break
			}
		}
		if !ok {
			return 0, false
		}
	}
	delete(c.pending, id)
	if n+ChildWindow < c.high {
		return 0, false // too far behind
	}
	if n+1 > c.high {
		c.high = n + 1
		c.derive(c.high + ChildWindow)
	}
	if len(c.pending) > 4*ChildWindow && c.high > 2*ChildWindow {
		for k, v := range c.pending {
			if v < c.high-2*ChildWindow {
				delete(c.pending, k)
			}
		}
	}
	return n, true
}
