// Package ids defines the identifiers of tasks and objects.
//
// A TaskID is 16 bytes. The ObjectIDs a task returns are derived from it, so
// a submitter knows its return ObjectIDs without a round trip:
//
//	ObjectID = TaskID (16 bytes) || index (uint32, big endian)
//
// Return i of a task has index i+1; objects made by Put have the high bit of
// the index set (PutIndexFlag) and a per-task counter below it. Index 0 is
// never used, so the zero ObjectID is invalid.
//
// Child task IDs are derived from the parent's TaskID and a per-parent
// counter, so a retried parent submits children under the same IDs.
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

// Child returns the TaskID of the n-th task submitted by t.
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
