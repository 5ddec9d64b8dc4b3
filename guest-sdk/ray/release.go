package ray

import (
	"sync/atomic"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// Refs are counted (guest-sdk/ABI.md §5, release). The host counts the
// references a running task holds: the returns of what it submits, what
// it puts, and each ref inside the values it is given (arguments, Get
// results). They are all released when the attempt ends — an actor's
// when the actor dies. So that a long-running task (a driver, an actor)
// does not keep everything it ever touched, the SDK gives refs back as
// the program drops them: every ObjectRef of one object shares a handle,
// and once no copy of the handle is reachable the garbage collector runs
// its cleanup, which queues a release; queued releases go to the host
// with the next call the guest makes. Release gives refs back at once.
//
// A ref kept outside an ObjectRef (its ID as a string, say) is not
// counted: once every ObjectRef of the object is gone it may be freed,
// and reading it then fails with ErrObjectFreed.

// handle is shared by the copies of the ObjectRefs of one object made in
// one invocation (nil natively, where nothing is counted).
type handle struct {
	c *refCount
	// ready: a Wait found the object ready. An object stays ready (its
	// value, or its failure, exists while a ref holds it), so a later
	// Wait need not ask the host about it again (waitany.go).
	ready atomic.Bool
	// waitCall is the last Wait call that looked at the handle: a second
	// look in the same call is a ref given twice.
	waitCall atomic.Uint64
	// val is the object's value as a Get got it, if it may answer the
	// next Get (getcache.go); dropped when the handle is released.
	val atomic.Pointer[abi.Value]
}

// refCount is what a handle's cleanup releases; the cleanup must not
// reach the handle itself.
type refCount struct {
	id    ids.ObjectID
	epoch epoch
	n     int32 // references the host counted for this handle
}

// epoch is whose references a handle counts: the running attempt of a
// task, or an actor (all its calls hold together).
type epoch struct {
	task    ids.TaskID
	attempt uint32
}

func epochOf(t *taskState) epoch {
	if t == nil {
		return epoch{}
	}
	if !t.actor.IsZero() {
		return epoch{task: t.actor, attempt: ^uint32(0)}
	}
	return epoch{task: t.id, attempt: t.attempt}
}

// Release gives the host back the references refs hold, at once, rather
// than when the garbage collector finds them unreachable: once no other
// holder has the object it is freed, and reading it through any copy of
// these refs fails with ErrObjectFreed. Releasing twice does nothing.
func Release(refs ...AnyRef) {
	for _, r := range refs {
		if h := r.refHandle(); h != nil {
			releaseNow(h)
		}
	}
}
