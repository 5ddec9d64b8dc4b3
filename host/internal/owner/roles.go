package owner

import (
	"sync/atomic"

	"github.com/rayhost/rayhost/host/internal/refcount"
)

// The owner's roles. Each is a type of its own, so that what one role asks
// of another is a call through a named field (h.disp.start, h.acts.killActor)
// rather than one method set of a hundred; they share the owner's lock,
// Owner.mu, because they all step the same task state machines.
//
//	Owner        the task table, the lifecycle shell (step.go), submit, seal,
//	             cancel, task events, the object directory's binding
//	dispatcher   resources reserved → workers or peers; Exec; CPU released
//	             while a task blocks; timeouts; arguments fetched first
//	workerRole   the worker pool's Handler: ready, frames in, death (what ran)
//	guestOps     the ops a running guest calls (guest-sdk/ABI.md)
//	actorTable   actors: creation, their queues, restarts, names
//	executor     tasks this host runs for other hosts (PeerService.Execute)
//	remoteRole   tasks this host runs on other hosts, and calling members
//	admission    modules and the call policy: what may run, with what grants
//	lineageRole  finished tasks kept to rebuild objects lost with a host
//	refsRole     the reference counter's shell (refs.go; its own lock)
//	sessionRole  the API's client sessions (sessions.go; its own lock)
//	borrowRole   borrows between hosts (borrow.go; its own lock)

type (
	dispatcher struct{ o *Owner }
	workerRole struct{ o *Owner }
	guestOps   struct {
		o    *Owner
		gets atomic.Uint64 // guests' Get ops served (a guest answers some itself: guest-sdk/ray/getcache.go)
	}
	actorTable  struct{ o *Owner }
	executor    struct{ o *Owner }
	admission   struct{ o *Owner }
	lineageRole struct{ o *Owner }
)

// roles makes h's roles.
func (h *Owner) roles() error {
	h.disp, h.wrk, h.gops, h.acts = &dispatcher{h}, &workerRole{h}, &guestOps{o: h}, &actorTable{h}
	h.fgn, h.rem, h.adm, h.lin = &executor{h}, &remoteRole{o: h}, &admission{h}, &lineageRole{h}
	h.refs = &refsRole{o: h, c: refcount.New()}
	h.brw = newBorrowRole(h)
	var err error
	h.sess, err = newSessionRole(h)
	return err
}
