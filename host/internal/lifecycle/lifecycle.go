// Package lifecycle is the deterministic core of a task's life on its
// owning host: events in, actions out. It holds no goroutines, clocks, locks
// or I/O; the owner (the shell around it) feeds it what happened — an
// argument became ready, a worker was assigned, the attempt ended, a cancel
// arrived — and carries out the actions it returns: queue the task for
// resources, send the Exec, start the attempt's timer, seal the results,
// kill the worker.
//
// A task's life:
//
//	            Submit
//	              │
//	              ▼
//	      ┌──────────────┐  ArgFailed             ┌────────┐
//	      │ pending_args │───────────────────────►│ failed │
//	      └──────┬───────┘                        └────────┘
//	             │ ArgReady (the last)                 ▲
//	             ▼                                     │ Infeasible (a lone host)
//	    ┌───────────────────┐──────────────────────────┘
//	┌──►│ pending_resources │ queued for resources (an actor call: queued
//	│   └────────┬──────────┘  on its actor, in scheduled); Infeasible with
//	│            │             Wait (a cluster): stays, recording why
//	│            │ Reserved (here, or on a peer: straight to running)
//	│            ▼
//	│     ┌────────────┐
//	│     │ scheduled  │ waiting for an idle worker process (or, Reserved
//	│     └─────┬──────┘  Behind, queued behind a running task on its worker)
//	│           │ WorkerAssigned (Unstarted: its arguments are on other
//	│           │ hosts, the peer refused it, or the worker it was queued
//	│           │ on gave it back or died: back to pending_args, no retry)
//	│           ▼
//	│     ┌───────────┐ Block / Unblock: the CPU is released while the
//	│     │  running  │ guest waits in Get, Wait or Next, and taken back
//	│     └─────┬─────┘
//	│ retry     │ Done / WorkerDied / HostFailed (Timeout kills the worker)
//	└───────────┤ (a system failure, or an application error the retry
//	            │  policy names, within MaxRetries; Attempt+1)
//	            ▼
//	  finished │ failed │ cancelled
//
// Cancel moves any state before a terminal one to cancelled: a queued task
// never runs; a running one has its blocking calls ended (or, with Force,
// its worker killed) and ends as cancelled whatever it returns. A cancelled
// task is never retried. Rebuild runs a finished task again when every copy
// of one of its results is lost (lineage reconstruction), as a new attempt
// counted against MaxRetries.
package lifecycle

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
)

// State is where a task is in its life.
type State uint8

const (
	PendingArgs State = iota
	PendingResources
	Scheduled
	Running
	Finished
	Failed
	Cancelled
	// Retried is an event only: an attempt failed and another follows.
	Retried
)

var stateNames = [...]string{"pending_args", "pending_resources", "scheduled", "running", "finished", "failed", "cancelled", "retried"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", s)
}

// Terminal reports whether s ends a task's life (until a Rebuild).
func (s State) Terminal() bool { return s >= Finished && s <= Cancelled }

// Errors Step returns. The shell treats them as "nothing happened": they
// are events that arrived late (a timer of an attempt that already ended)
// or that the state does not take.
var (
	// ErrStale: the event belongs to a state the task has left.
	ErrStale = errors.New("lifecycle: stale event")
	// ErrNoRetries: a Rebuild needs an attempt the policy does not allow.
	ErrNoRetries = errors.New("lifecycle: no retries left")
)

// Policy is what the task's options say about retries.
type Policy struct {
	// Retriable: the task's kind may run again at all (a remote function
	// call; not a driver, a describe or an actor task, whose retries are
	// the actor's).
	Retriable bool
	// ActorCall: the task is a method call, queued on its actor rather than
	// for resources.
	ActorCall bool
	// MaxRetries is how many attempts may follow the first; -1 is no limit.
	MaxRetries int32
	Retry      abi.RetryMode
	RetryOn    []string
}

// Task is the lifecycle state of one task. The zero value (with a Policy)
// is a task about to be submitted.
type Task struct {
	Policy Policy

	State State
	// Attempt counts from 0.
	Attempt uint32
	// DepsLeft is the number of ObjectRef arguments not yet ready.
	DepsLeft int
	// Holding: the task holds its resources (false while blocked in Get,
	// Wait or Next, and before it is reserved).
	Holding bool
	// Node is the peer running the attempt ("" here).
	Node string
	// Cancelled: a cancel arrived; the task ends as cancelled.
	Cancelled bool
	// TimedOut: the attempt ran past its timeout (TimeoutLimit) and its
	// worker was killed.
	TimedOut     bool
	TimeoutLimit time.Duration
	// Violation is the first ABI rule the attempt's guest broke: the task
	// fails with permission_denied whatever it returns.
	Violation string
	// Refusals counts attempts peers sent back before they started.
	Refusals int

	// depReady marks the arguments whose values exist; failDep is the
	// first (by position) whose value is a failure, failErr the task's
	// failure for it.
	depReady []bool
	failDep  int
	failErr  *abi.TaskError

	queued bool // an actor call's arguments are ready (QueueOnActor sent)
	forced bool // a cancel asked for the worker to be killed
}

// Messages of the failures the machine makes itself.
const (
	MsgCancelledBeforeRun = "the task was cancelled before it ran"
	MsgCancelled          = "the task was cancelled"
	// MsgInfeasible starts the event of a task that waits for a host
	// that fits (Infeasible with Wait).
	MsgInfeasible = "infeasible, waiting for a host that fits to join: "
)

func failure(kind abi.ErrorKind, msg string) *abi.TaskError {
	return &abi.TaskError{Kind: kind, Message: msg}
}

// Step feeds one event to t and returns the actions it calls for. An
// event the state does not take returns ErrStale and changes nothing.
func (t *Task) Step(ev Event) ([]Action, error) {
	if t.State.Terminal() {
		if r, ok := ev.(Rebuild); ok && t.State == Finished {
			return t.rebuild(r)
		}
		if r, ok := ev.(Restart); ok && t.State == Finished {
			retried := t.rec(Retried, r.Why)
			t.Attempt++
			t.State = PendingArgs
			t.Node, t.TimedOut, t.Violation, t.Cancelled, t.Holding, t.DepsLeft = "", false, "", false, false, 0
			t.depReady, t.failErr = nil, nil
			return []Action{retried, Requeue{}}, nil
		}
		return nil, fmt.Errorf("%w: %T in %s", ErrStale, ev, t.State)
	}
	switch ev := ev.(type) {
	case Submit:
		if t.State != PendingArgs || t.Attempt != 0 || t.DepsLeft != 0 {
			return nil, t.stale(ev)
		}
		return []Action{t.rec(PendingArgs, ev.Note), AwaitArgs{}}, nil
	case ActorReady:
		if t.State != PendingArgs || !t.queued {
			return nil, t.stale(ev)
		}
		t.State, t.queued = Scheduled, false
		return []Action{t.rec(Scheduled, "")}, nil
	case Await:
		if t.State != PendingArgs || t.DepsLeft != 0 || ev.Deps < 0 || t.queued {
			return nil, t.stale(ev)
		}
		if ev.Deps == 0 {
			return t.argsReady(), nil
		}
		t.DepsLeft, t.depReady, t.failErr = ev.Deps, make([]bool, ev.Deps), nil
		return nil, nil
	case ActorRetry:
		if t.State != Running || !t.Policy.ActorCall || t.Cancelled {
			return nil, t.stale(ev)
		}
		retried := t.rec(Retried, ev.Why)
		t.Attempt++
		t.State = Scheduled
		return []Action{retried, Retry{Err: failure(abi.ErrorActorDied, ev.Why)}, QueueOnActor{Front: true}}, nil
	case ArgReady:
		if t.State != PendingArgs || t.DepsLeft == 0 || ev.Dep < 0 || ev.Dep >= len(t.depReady) || t.depReady[ev.Dep] {
			return nil, t.stale(ev)
		}
		t.depReady[ev.Dep] = true
		t.DepsLeft--
		if ev.Err != nil && (t.failErr == nil || ev.Dep < t.failDep) {
			t.failDep, t.failErr = ev.Dep, ev.Err
		}
		if t.failErr != nil {
			if !slices.Contains(t.depReady[:t.failDep], false) {
				return t.end(Failed, t.failErr), nil
			}
			return nil, nil // an earlier argument may fail too: it decides
		}
		if t.DepsLeft > 0 {
			return nil, nil
		}
		return t.argsReady(), nil
	case ArgFailed:
		if t.State != PendingArgs {
			return nil, t.stale(ev)
		}
		return t.end(Failed, ev.Err), nil
	case Infeasible:
		if t.State != PendingResources {
			return nil, t.stale(ev)
		}
		if ev.Wait {
			return []Action{t.rec(PendingResources, MsgInfeasible+ev.Why)}, nil
		}
		return t.end(Failed, failure(abi.ErrorInfeasible, ev.Why)), nil
	case Reserved:
		return t.reserved(ev)
	case WorkerAssigned:
		if t.State != Scheduled {
			return nil, t.stale(ev)
		}
		t.State = Running
		if t.Policy.ActorCall {
			return []Action{t.rec(Running, ""), Exec{Attempt: t.Attempt}}, nil
		}
		return []Action{t.rec(Running, ""), StartTimer{Attempt: t.Attempt}, Exec{Attempt: t.Attempt}}, nil
	case Unstarted:
		return t.unstarted(ev)
	case Block:
		if t.State != Running || !t.Holding || t.Node != "" || t.Policy.ActorCall {
			return nil, t.stale(ev)
		}
		t.Holding = false
		return []Action{ReleaseCPU{}}, nil
	case Unblock:
		if t.State != Running || t.Holding || t.Node != "" || t.Policy.ActorCall {
			return nil, t.stale(ev)
		}
		t.Holding = true
		return []Action{AcquireCPU{}}, nil
	case Timeout:
		if t.State != Running || ev.Attempt != t.Attempt || t.TimedOut {
			return nil, t.stale(ev)
		}
		t.TimedOut, t.TimeoutLimit = true, ev.Limit
		return []Action{KillWorker{}}, nil
	case Violate:
		if t.State != Running {
			return nil, t.stale(ev)
		}
		if t.Violation == "" {
			t.Violation = ev.Why
		}
		return nil, nil
	case Done:
		if t.State != Running {
			return nil, t.stale(ev)
		}
		return t.done(ev.Err), nil
	case Cancel:
		return t.cancel(ev), nil
	case Fail:
		if t.Cancelled && ev.Err.Kind != abi.ErrorCancelled {
			return t.end(Failed, failure(abi.ErrorCancelled, MsgCancelled)), nil
		}
		return t.end(Failed, ev.Err), nil
	case Rebuild, Restart:
		return nil, t.stale(ev)
	}
	return nil, fmt.Errorf("lifecycle: unknown event %T", ev)
}

func (t *Task) stale(ev Event) error {
	return fmt.Errorf("%w: %T in %s", ErrStale, ev, t.State)
}

// argsReady: every argument is ready; queue the task.
func (t *Task) argsReady() []Action {
	if t.Policy.ActorCall {
		// The shell brings the arguments here first, then feeds ActorReady.
		t.queued = true
		return []Action{QueueOnActor{}}
	}
	t.State = PendingResources
	return []Action{t.rec(PendingResources, ""), Enqueue{}}
}

func (t *Task) reserved(ev Reserved) ([]Action, error) {
	if t.State != PendingResources {
		return nil, t.stale(ev)
	}
	t.Holding = true
	if ev.Node == "" {
		t.State = Scheduled
		if ev.Behind != "" {
			return []Action{t.rec(Scheduled, ev.Behind)}, nil
		}
		return []Action{t.rec(Scheduled, ""), NeedWorker{}}, nil
	}
	// A peer runs it: no worker here to wait for.
	t.Node, t.State = ev.Node, Running
	return []Action{t.rec(Scheduled, "on host "+ev.Node), t.rec(Running, ""),
		StartTimer{Attempt: t.Attempt}, Exec{Attempt: t.Attempt}}, nil
}

func (t *Task) unstarted(ev Unstarted) ([]Action, error) {
	if t.State != Running && (t.State != Scheduled || !t.Holding || t.Policy.ActorCall) {
		return nil, t.stale(ev)
	}
	acts := append([]Action{StopTimer{}}, t.leave()...)
	t.Node = ""
	if ev.Refused {
		t.Refusals++
	}
	t.State = PendingArgs
	if t.Cancelled {
		return append(acts, t.end(Failed, failure(abi.ErrorCancelled, MsgCancelled))...), nil
	}
	if ev.Refused {
		// Placed again as it is: the scheduler may pick another host.
		return append(acts, t.rec(PendingArgs, ev.Why), Requeue{}), nil
	}
	return append(acts, t.rec(PendingArgs, ev.Why), FetchArgs{}), nil
}

// leave takes the task out of any queue and gives back what it holds.
func (t *Task) leave() []Action {
	var acts []Action
	if t.Policy.ActorCall {
		if t.State != Running {
			acts = append(acts, Dequeue{From: t.State}) // out of its actor's queue
		}
		return acts // actor calls hold no resources of their own
	}
	if t.State == PendingResources || t.State == Scheduled {
		acts = append(acts, Dequeue{From: t.State})
	}
	if t.Holding {
		acts = append(acts, Release{Node: t.Node})
		t.Holding = false
	}
	return acts
}

// end moves the task to a terminal state: s, or cancelled for a failure
// of a cancelled task.
func (t *Task) end(s State, err *abi.TaskError) []Action {
	var acts []Action
	if t.State == Running {
		acts = append(acts, StopTimer{})
	}
	acts = append(acts, t.leave()...)
	if t.Cancelled && s == Failed {
		s = Cancelled
	}
	t.State = s
	msg := ""
	if err != nil {
		msg = err.Message
	}
	acts = append(acts, t.rec(s, msg), Forget{})
	if s == Finished {
		return append(acts, SealResults{})
	}
	return append(acts, SealFailure{Err: err})
}

// done ends a running attempt.
func (t *Task) done(err *abi.TaskError) []Action {
	acts := t.outcome(err)
	if err != nil && !t.Cancelled && crashed(err.Kind) {
		// The attempt's guest is gone with what it was waiting for: the
		// children it submitted are killed, as Ray kills the tasks of an
		// owner that died (a retry submits its own).
		acts = append(acts, CancelChildren{Force: true})
	}
	return acts
}

// crashed reports whether a failure of this kind ended the attempt's guest
// (its worker died or was killed, or its instance was dropped), not one
// the guest returned.
func crashed(k abi.ErrorKind) bool {
	switch k {
	case abi.ErrorWorkerDied, abi.ErrorTimeout, abi.ErrorTrap, abi.ErrorOutOfMemory:
		return true
	}
	return false
}

// outcome is what Done does: finish, fail, or retry.
func (t *Task) outcome(err *abi.TaskError) []Action {
	if t.TimedOut && !t.Cancelled {
		err = failure(abi.ErrorTimeout, fmt.Sprintf("the task ran past its timeout of %v; its worker was stopped", t.TimeoutLimit))
	}
	if t.Violation != "" && !t.Cancelled {
		// Whatever it returned, a guest that broke the ABI's rules fails
		// and is not retried.
		err = failure(abi.ErrorPermissionDenied, t.Violation)
	}
	if t.Cancelled {
		// Even a result that arrives is dropped: every Get sees the cancel.
		err = failure(abi.ErrorCancelled, MsgCancelled)
	}
	if err == nil {
		return t.end(Finished, nil)
	}
	if !t.retryable(err) {
		return t.end(Failed, err)
	}
	if t.Policy.ActorCall {
		// An application error the call's options retry (Ray's
		// retry_exceptions with max_task_retries): it runs again on the
		// same actor, before the calls queued behind it.
		retried := t.rec(Retried, err.Message) // the attempt that failed
		t.Attempt++
		t.State = Scheduled
		return []Action{StopTimer{}, retried, Retry{Err: err}, QueueOnActor{Front: true}}
	}
	acts := []Action{StopTimer{}}
	acts = append(acts, t.leave()...)
	acts = append(acts, t.rec(Retried, err.Message), Retry{Err: err})
	t.Attempt++
	t.Node, t.TimedOut, t.Violation = "", false, ""
	t.State = PendingArgs // silently: the retried event says it
	return append(acts, Requeue{})
}

// MayRetryInPlace reports whether an actor call's failure (an application
// error, a trap) may run it again on its actor, ahead of the calls queued
// behind it: its options retry errors and it has retries left.
func (t *Task) MayRetryInPlace() bool {
	p := t.Policy
	return p.ActorCall && !t.Cancelled && p.Retry != abi.RetryNone && (p.MaxRetries < 0 || int64(t.Attempt) < int64(p.MaxRetries))
}

// retryable reports whether a failed attempt runs again.
func (t *Task) retryable(err *abi.TaskError) bool {
	p := t.Policy
	if t.Cancelled || !(p.Retriable || p.ActorCall) || (p.MaxRetries >= 0 && int64(t.Attempt) >= int64(p.MaxRetries)) {
		return false
	}
	switch err.Kind {
	case abi.ErrorWorkerDied:
		// A system failure; an actor call's is its actor's death, which
		// ActorRetry handles (within the actor's max_task_retries).
		return !p.ActorCall
	case abi.ErrorApplication, abi.ErrorPanic, abi.ErrorTrap, abi.ErrorTimeout, abi.ErrorOutOfMemory:
		switch p.Retry {
		case abi.RetryAll:
			return true
		case abi.RetryListed:
			return slices.Contains(p.RetryOn, string(err.Kind)) || (err.Code != "" && slices.Contains(p.RetryOn, err.Code))
		}
	}
	return false
}

func (t *Task) cancel(ev Cancel) []Action {
	if t.Cancelled {
		if ev.Force && t.State == Running && !t.forced {
			// A force after a cancel the guest did not heed.
			t.forced = true
			return []Action{KillWorker{}}
		}
		return nil
	}
	t.forced = ev.Force
	t.Cancelled = true
	acts := []Action{CloseCancel{}}
	if ev.Recursive {
		acts = append(acts, CancelChildren{Force: ev.Force})
	}
	switch {
	case t.State != Running:
		return append(acts, t.end(Failed, failure(abi.ErrorCancelled, MsgCancelledBeforeRun))...)
	case ev.Force:
		return append(acts, KillWorker{})
	default:
		return append(acts, CancelInWorker{})
	}
}

func (t *Task) rebuild(ev Rebuild) ([]Action, error) {
	p := t.Policy
	if !p.Retriable {
		return nil, fmt.Errorf("%w: the task cannot run again", ErrNoRetries)
	}
	if p.MaxRetries >= 0 && int64(t.Attempt) >= int64(p.MaxRetries) {
		return nil, fmt.Errorf("%w (MaxRetries %d)", ErrNoRetries, p.MaxRetries)
	}
	retried := t.rec(Retried, ev.Why)
	t.Attempt++
	t.State = PendingArgs
	t.Node, t.TimedOut, t.Violation, t.Cancelled, t.Holding, t.DepsLeft = "", false, "", false, false, 0
	t.depReady, t.failErr = nil, nil
	return []Action{retried, Revive{}, t.rec(PendingArgs, ""), AwaitArgs{}}, nil
}

// rec is the Record of t entering s now.
func (t *Task) rec(s State, msg string) Record { return Record{State: s, Msg: msg, Attempt: t.Attempt} }
