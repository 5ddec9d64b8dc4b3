package lifecycle

import (
	"time"

	"github.com/rayhost/rayhost/internal/abi"
)

// Event is something that happened to a task.
type Event interface{ event() }

type (
	// Submit registers the task; Note goes with its first event.
	Submit struct{ Note string }
	// Await: the shell counted Deps ObjectRef arguments to wait for (0:
	// every argument is ready, or here again after FetchArgs or Requeue).
	Await struct{ Deps int }
	// ArgReady: the value of ObjectRef argument Dep exists (Dep counts the
	// distinct ObjectRef arguments from 0, in argument order, as Await
	// counted them). Err is set when that value is a failure: the task
	// then fails with the failure of its first failed argument, by
	// position, as in Ray — once every argument before it is ready, so
	// which one is reported does not depend on which finished first.
	ArgReady struct {
		Dep int
		Err *abi.TaskError
	}
	// ArgFailed: an argument failed or is lost; Err is the task's failure.
	ArgFailed struct{ Err *abi.TaskError }
	// Infeasible: no host can give the task its resources now. With Wait
	// (a host in a cluster, which hosts may join) the task stays pending
	// and the event records why, as Ray keeps infeasible work pending;
	// without, it fails.
	Infeasible struct {
		Why  string
		Wait bool
	}
	// Reserved: the scheduler reserved the task's resources here (Node "")
	// or on the peer Node. Behind: here, and the task is queued behind a
	// running task on that task's worker (a worker's pipeline): it waits
	// for no other worker, and WorkerAssigned follows when it starts.
	Reserved struct {
		Node   string
		Behind string
	}
	// WorkerAssigned: an idle worker takes the task (or, for an actor
	// call, its actor's worker is free).
	WorkerAssigned struct{}
	// Unstarted: the attempt did not start — its arguments are on other
	// hosts, (Refused) the peer sent it back, or it was queued behind
	// another task on a worker that gave it back or died (then in
	// scheduled). It costs no retry.
	Unstarted struct {
		Refused bool
		Why     string
	}
	// Block and Unblock bracket a guest's wait in Get, Wait or Next.
	Block   struct{}
	Unblock struct{}
	// Done: the attempt ended, with Err nil for success.
	Done struct{ Err *abi.TaskError }
	// Timeout: attempt Attempt ran past its timeout, Limit.
	Timeout struct {
		Attempt uint32
		Limit   time.Duration
	}
	// Violate: the guest broke an ABI rule (the first one is kept).
	Violate struct{ Why string }
	// Cancel: a caller cancelled the task.
	Cancel struct{ Force, Recursive bool }
	// Rebuild: every copy of one of a finished task's results is lost; run
	// it again.
	Rebuild struct{ Why string }
	// Restart: the actor this finished creation task made died and
	// restarts; the creation runs again (the actor's restart policy
	// decided, not the task's).
	Restart struct{ Why string }
	// ActorReady: an actor call's arguments are here; it waits for its
	// actor.
	ActorReady struct{}
	// ActorRetry: the actor of a running call died and restarts; the call
	// runs again on the new instance.
	ActorRetry struct{ Why string }
	// Fail ends the task now with Err, whatever its state (the host could
	// not run it, its peer is gone for good).
	Fail struct{ Err *abi.TaskError }
)

func (Submit) event()         {}
func (Await) event()          {}
func (ActorRetry) event()     {}
func (ActorReady) event()     {}
func (Restart) event()        {}
func (ArgReady) event()       {}
func (ArgFailed) event()      {}
func (Infeasible) event()     {}
func (Reserved) event()       {}
func (WorkerAssigned) event() {}
func (Unstarted) event()      {}
func (Block) event()          {}
func (Unblock) event()        {}
func (Done) event()           {}
func (Timeout) event()        {}
func (Violate) event()        {}
func (Cancel) event()         {}
func (Rebuild) event()        {}
func (Fail) event()           {}

// Action is something the shell must do. Actions come in the order they
// are to be carried out.
type Action interface{ action() }

type (
	// Record: attempt Attempt of the task entered State (an event for the
	// task's history).
	Record struct {
		State   State
		Msg     string
		Attempt uint32
	}
	// Enqueue: queue the task for resources. If the scheduler finds them
	// infeasible, feed Infeasible.
	Enqueue struct{}
	// QueueOnActor: the call's arguments are ready: bring them here and
	// feed ActorReady. With Front, the call is already scheduled again (a
	// retried call): put it before the calls queued behind it.
	QueueOnActor struct{ Front bool }
	// Dequeue: take the task out of the resource queue or the wait for a
	// worker (it was in state From).
	Dequeue struct{ From State }
	// Release: give back the resources the task holds (on Node).
	Release struct{ Node string }
	// ReleaseCPU and AcquireCPU: a blocked task's resources, here.
	ReleaseCPU struct{}
	AcquireCPU struct{}
	// NeedWorker: the task waits for an idle worker.
	NeedWorker struct{}
	// Exec: send the attempt to its worker (or peer).
	Exec struct{ Attempt uint32 }
	// StartTimer: time attempt Attempt (if the task has a timeout).
	StartTimer struct{ Attempt uint32 }
	// StopTimer: the attempt ended.
	StopTimer struct{}
	// KillWorker: stop the worker running the attempt.
	KillWorker struct{}
	// CancelInWorker: end the running attempt's blocking calls.
	CancelInWorker struct{}
	// CloseCancel: close the channel that tells the task's waits it is
	// cancelled.
	CloseCancel struct{}
	// CancelChildren: cancel the tasks this one submitted (Force as given).
	CancelChildren struct{ Force bool }
	// AwaitArgs: count the task's ObjectRef arguments (borrowing or
	// rebuilding them) and feed Await.
	AwaitArgs struct{}
	// FetchArgs: bring the task's arguments here, then feed Await{0}.
	FetchArgs struct{}
	// Requeue: feed Await{0} (a new attempt's arguments are ready).
	Requeue struct{}
	// Retry: another attempt follows after Err (log it).
	Retry struct{ Err *abi.TaskError }
	// SealResults: the attempt succeeded; seal its values.
	SealResults struct{}
	// SealFailure: every return of the task gets Err. Err carries Kind,
	// Message and Cause; the shell fills in the task's identity.
	SealFailure struct{ Err *abi.TaskError }
	// Forget: the task left the live task table (it is terminal).
	Forget struct{}
	// Revive: a Rebuild brings the finished task back into the table.
	Revive struct{}
)

func (Record) action()         {}
func (Enqueue) action()        {}
func (QueueOnActor) action()   {}
func (Dequeue) action()        {}
func (Release) action()        {}
func (ReleaseCPU) action()     {}
func (AcquireCPU) action()     {}
func (NeedWorker) action()     {}
func (Exec) action()           {}
func (StartTimer) action()     {}
func (StopTimer) action()      {}
func (KillWorker) action()     {}
func (CancelInWorker) action() {}
func (CloseCancel) action()    {}
func (CancelChildren) action() {}
func (AwaitArgs) action()      {}
func (FetchArgs) action()      {}
func (Requeue) action()        {}
func (Retry) action()          {}
func (SealResults) action()    {}
func (SealFailure) action()    {}
func (Forget) action()         {}
func (Revive) action()         {}
