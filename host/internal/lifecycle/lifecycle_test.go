package lifecycle

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
)

var (
	call      = Policy{Retriable: true, MaxRetries: 3}
	noRetry   = Policy{Retriable: true, MaxRetries: 0}
	retryAll  = Policy{Retriable: true, MaxRetries: 1, Retry: abi.RetryAll}
	retryE1   = Policy{Retriable: true, MaxRetries: -1, Retry: abi.RetryListed, RetryOn: []string{"E1", "timeout"}}
	driver    = Policy{MaxRetries: 3} // not retriable: a driver, a describe, an actor creation
	actorCall = Policy{ActorCall: true}

	appErr      = &abi.TaskError{Kind: abi.ErrorApplication, Message: "boom"}
	appErrE1    = &abi.TaskError{Kind: abi.ErrorApplication, Code: "E1", Message: "e1"}
	died        = &abi.TaskError{Kind: abi.ErrorWorkerDied, Message: "the worker died"}
	argFailure  = &abi.TaskError{Kind: abi.ErrorDependency, Message: "an argument failed"}
	argFailure2 = &abi.TaskError{Kind: abi.ErrorDependency, Message: "the second argument failed"}
	hostErr     = &abi.TaskError{Kind: abi.ErrorHost, Message: "the host could not"}
	cancelled   = failure(abi.ErrorCancelled, MsgCancelled)
	cancelledQ  = failure(abi.ErrorCancelled, MsgCancelledBeforeRun)
	timedOut    = failure(abi.ErrorTimeout, "the task ran past its timeout of 1s; its worker was stopped")
)

// Paths to each state of a fresh task, so a row names where it starts.
var (
	toPendingArgs = []Event{Submit{}, Await{Deps: 2}}
	toQueued      = []Event{Submit{}, Await{}}
	toScheduled   = []Event{Submit{}, Await{}, Reserved{}}
	toRunning     = []Event{Submit{}, Await{}, Reserved{}, WorkerAssigned{}}
	toRunningPeer = []Event{Submit{}, Await{}, Reserved{Node: "b"}}
	toFinished    = []Event{Submit{}, Await{}, Reserved{}, WorkerAssigned{}, Done{}}
	toActorQueued = []Event{Submit{}, Await{}, ActorReady{}}
	toActorRun    = []Event{Submit{}, Await{}, ActorReady{}, WorkerAssigned{}}
)

func then(path []Event, evs ...Event) []Event {
	return append(append([]Event(nil), path...), evs...)
}

// TestStep drives a task through every edge of the lifecycle diagram: each
// row replays events from a fresh task and checks the last event's actions
// and the state it leaves.
func TestStep(t *testing.T) {
	tests := []struct {
		name    string
		policy  Policy
		events  []Event
		want    []Action // of the last event
		wantErr error    // of the last event
		state   State
		attempt uint32
		check   func(t *testing.T, task *Task)
	}{
		// submit → pending_args → pending_resources
		{name: "submit awaits its arguments", policy: call, events: []Event{Submit{}},
			want: []Action{Record{State: PendingArgs}, AwaitArgs{}}, state: PendingArgs},
		{name: "no arguments to wait for: queued", policy: call, events: toQueued,
			want: []Action{Record{State: PendingResources}, Enqueue{}}, state: PendingResources},
		{name: "an argument ready, another to come", policy: call, events: then(toPendingArgs, ArgReady{}),
			want: nil, state: PendingArgs, check: func(t *testing.T, task *Task) {
				if task.DepsLeft != 1 {
					t.Errorf("DepsLeft = %d, want 1", task.DepsLeft)
				}
			}},
		{name: "the last argument ready: queued", policy: call, events: then(toPendingArgs, ArgReady{Dep: 1}, ArgReady{Dep: 0}),
			want: []Action{Record{State: PendingResources}, Enqueue{}}, state: PendingResources},
		{name: "an argument ready twice is stale", policy: call, events: then(toPendingArgs, ArgReady{}, ArgReady{}),
			wantErr: ErrStale, state: PendingArgs},
		{name: "an argument out of range is stale", policy: call, events: then(toPendingArgs, ArgReady{Dep: 2}),
			wantErr: ErrStale, state: PendingArgs},
		{name: "an extra ArgReady is stale", policy: call, events: then(toPendingArgs, ArgReady{Dep: 0}, ArgReady{Dep: 1}, ArgReady{}),
			wantErr: ErrStale, state: PendingResources},
		// Several failed arguments: the first by position is reported,
		// whichever finished first (Ray's order).
		{name: "the first argument failed", policy: call, events: then(toPendingArgs, ArgReady{Dep: 0, Err: argFailure}),
			want: []Action{Record{State: Failed, Msg: argFailure.Message}, Forget{}, SealFailure{Err: argFailure}}, state: Failed},
		{name: "a later argument failed: the earlier ones decide", policy: call, events: then(toPendingArgs, ArgReady{Dep: 1, Err: argFailure2}),
			want: nil, state: PendingArgs},
		{name: "a later argument failed, the earlier one is fine", policy: call, events: then(toPendingArgs, ArgReady{Dep: 1, Err: argFailure2}, ArgReady{Dep: 0}),
			want: []Action{Record{State: Failed, Msg: argFailure2.Message}, Forget{}, SealFailure{Err: argFailure2}}, state: Failed},
		{name: "both failed, the later first: the first is reported", policy: call, events: then(toPendingArgs, ArgReady{Dep: 1, Err: argFailure2}, ArgReady{Dep: 0, Err: argFailure}),
			want: []Action{Record{State: Failed, Msg: argFailure.Message}, Forget{}, SealFailure{Err: argFailure}}, state: Failed},
		{name: "an argument failed", policy: call, events: then(toPendingArgs, ArgFailed{Err: argFailure}),
			want: []Action{Record{State: Failed, Msg: argFailure.Message}, Forget{}, SealFailure{Err: argFailure}}, state: Failed},
		{name: "an argument failed after the task was queued is stale", policy: call, events: then(toQueued, ArgFailed{Err: argFailure}),
			wantErr: ErrStale, state: PendingResources},
		{name: "submitted twice is stale", policy: call, events: then(toQueued, Submit{}),
			wantErr: ErrStale, state: PendingResources},
		{name: "a negative dependency count is refused", policy: call, events: []Event{Submit{}, Await{Deps: -1}},
			wantErr: ErrStale, state: PendingArgs},

		// pending_resources → failed (infeasible) | scheduled | running on a peer
		{name: "infeasible", policy: call, events: then(toQueued, Infeasible{Why: "no host has 9 GPUs"}),
			want: []Action{Dequeue{From: PendingResources}, Record{State: Failed, Msg: "no host has 9 GPUs"}, Forget{},
				SealFailure{Err: failure(abi.ErrorInfeasible, "no host has 9 GPUs")}}, state: Failed},
		{name: "infeasible in a cluster: waits, saying why", policy: call, events: then(toQueued, Infeasible{Why: "no host has 9 GPUs", Wait: true}),
			want: []Action{Record{State: PendingResources, Msg: MsgInfeasible + "no host has 9 GPUs"}}, state: PendingResources},
		{name: "infeasible, then a host that fits joined", policy: call, events: then(toQueued, Infeasible{Why: "x", Wait: true}, Reserved{}),
			want: []Action{Record{State: Scheduled}, NeedWorker{}}, state: Scheduled},
		{name: "reserved here: waits for a worker", policy: call, events: toScheduled,
			want: []Action{Record{State: Scheduled}, NeedWorker{}}, state: Scheduled,
			check: func(t *testing.T, task *Task) {
				if !task.Holding {
					t.Error("a reserved task holds its resources")
				}
			}},
		{name: "reserved on a peer: runs there", policy: call, events: toRunningPeer,
			want: []Action{Record{State: Scheduled, Msg: "on host b"}, Record{State: Running}, StartTimer{}, Exec{}}, state: Running,
			check: func(t *testing.T, task *Task) {
				if task.Node != "b" {
					t.Errorf("Node = %q, want b", task.Node)
				}
			}},
		{name: "reserved twice is stale", policy: call, events: then(toScheduled, Reserved{}),
			wantErr: ErrStale, state: Scheduled},

		// queued behind a running task on its worker (a worker's pipeline)
		{name: "reserved behind a running task: waits for no worker", policy: call, events: then(toQueued, Reserved{Behind: "behind x"}),
			want: []Action{Record{State: Scheduled, Msg: "behind x"}}, state: Scheduled},
		{name: "queued behind, then started", policy: call, events: then(toQueued, Reserved{Behind: "behind x"}, WorkerAssigned{}),
			want: []Action{Record{State: Running}, StartTimer{}, Exec{}}, state: Running},
		{name: "queued behind, given back: placed again, no retry", policy: call, events: then(toQueued, Reserved{Behind: "behind x"}, Unstarted{Why: "given back"}),
			want: []Action{StopTimer{}, Dequeue{From: Scheduled}, Release{}, Record{State: PendingArgs, Msg: "given back"}, FetchArgs{}}, state: PendingArgs,
			check: func(t *testing.T, task *Task) {
				if task.Attempt != 0 || task.Holding {
					t.Errorf("Attempt %d Holding %v, want 0, false", task.Attempt, task.Holding)
				}
			}},
		{name: "queued behind, cancelled: never runs", policy: call, events: then(toQueued, Reserved{Behind: "behind x"}, Cancel{}),
			want:  []Action{CloseCancel{}, Dequeue{From: Scheduled}, Release{}, Record{State: Cancelled, Msg: MsgCancelledBeforeRun}, Forget{}, SealFailure{Err: failure(abi.ErrorCancelled, MsgCancelledBeforeRun)}},
			state: Cancelled},

		// scheduled → running
		{name: "a worker is assigned", policy: call, events: toRunning,
			want: []Action{Record{State: Running}, StartTimer{}, Exec{}}, state: Running},
		{name: "a worker assigned to a queued task is stale", policy: call, events: then(toQueued, WorkerAssigned{}),
			wantErr: ErrStale, state: PendingResources},

		// running → pending_args (did not start; no retry)
		{name: "arguments elsewhere: sent back to fetch them", policy: call, events: then(toRunning, Unstarted{Why: "fetching"}),
			want: []Action{StopTimer{}, Release{}, Record{State: PendingArgs, Msg: "fetching"}, FetchArgs{}}, state: PendingArgs},
		{name: "refused by the peer: back, counted, no retry", policy: call, events: then(toRunningPeer, Unstarted{Refused: true, Why: "refused"}),
			want: []Action{StopTimer{}, Release{Node: "b"}, Record{State: PendingArgs, Msg: "refused"}, Requeue{}}, state: PendingArgs,
			check: func(t *testing.T, task *Task) {
				if task.Refusals != 1 || task.Node != "" || task.Attempt != 0 {
					t.Errorf("Refusals %d Node %q Attempt %d, want 1, \"\", 0", task.Refusals, task.Node, task.Attempt)
				}
			}},
		{name: "sent back then queued again", policy: call, events: then(toRunning, Unstarted{}, Await{}),
			want: []Action{Record{State: PendingResources}, Enqueue{}}, state: PendingResources},
		{name: "cancelled while running, then sent back: cancelled", policy: call, events: then(toRunning, Cancel{}, Unstarted{}),
			want:  []Action{StopTimer{}, Release{}, Record{State: Cancelled, Msg: MsgCancelled}, Forget{}, SealFailure{Err: cancelled}},
			state: Cancelled},

		// running: blocked in Get/Wait/Next
		{name: "blocked: the CPU is released", policy: call, events: then(toRunning, Block{}),
			want: []Action{ReleaseCPU{}}, state: Running},
		{name: "blocked twice is stale", policy: call, events: then(toRunning, Block{}, Block{}),
			wantErr: ErrStale, state: Running},
		{name: "unblocked: the CPU is taken back", policy: call, events: then(toRunning, Block{}, Unblock{}),
			want: []Action{AcquireCPU{}}, state: Running},
		{name: "unblocked without a block is stale", policy: call, events: then(toRunning, Unblock{}),
			wantErr: ErrStale, state: Running},
		{name: "a peer's attempt does not block here", policy: call, events: then(toRunningPeer, Block{}),
			wantErr: ErrStale, state: Running},
		{name: "finished while blocked releases nothing twice", policy: call, events: then(toRunning, Block{}, Done{}),
			want: []Action{StopTimer{}, Record{State: Finished}, Forget{}, SealResults{}}, state: Finished},

		// running → finished | failed | retried
		{name: "done", policy: call, events: toFinished,
			want: []Action{StopTimer{}, Release{}, Record{State: Finished}, Forget{}, SealResults{}}, state: Finished},
		{name: "an application error is not retried by default", policy: call, events: then(toRunning, Done{Err: appErr}),
			want: []Action{StopTimer{}, Release{}, Record{State: Failed, Msg: "boom"}, Forget{}, SealFailure{Err: appErr}}, state: Failed},
		{name: "an application error with RetryExceptions: retried", policy: retryAll, events: then(toRunning, Done{Err: appErr}),
			want:  []Action{StopTimer{}, Release{}, Record{State: Retried, Msg: "boom"}, Retry{Err: appErr}, Requeue{}},
			state: PendingArgs, attempt: 1},
		{name: "retries spent: failed", policy: retryAll, events: then(toRunning, Done{Err: appErr}, Await{}, Reserved{}, WorkerAssigned{}, Done{Err: appErr}),
			want: []Action{StopTimer{}, Release{}, Record{State: Failed, Msg: "boom", Attempt: 1}, Forget{}, SealFailure{Err: appErr}}, state: Failed, attempt: 1},
		{name: "a listed error code is retried", policy: retryE1, events: then(toRunning, Done{Err: appErrE1}),
			want:  []Action{StopTimer{}, Release{}, Record{State: Retried, Msg: "e1"}, Retry{Err: appErrE1}, Requeue{}},
			state: PendingArgs, attempt: 1},
		{name: "an unlisted error is not", policy: retryE1, events: then(toRunning, Done{Err: appErr}),
			want: []Action{StopTimer{}, Release{}, Record{State: Failed, Msg: "boom"}, Forget{}, SealFailure{Err: appErr}}, state: Failed},
		{name: "a worker death is retried", policy: call, events: then(toRunning, Done{Err: died}),
			want:  []Action{StopTimer{}, Release{}, Record{State: Retried, Msg: died.Message}, Retry{Err: died}, Requeue{}, CancelChildren{Force: true}},
			state: PendingArgs, attempt: 1},
		{name: "a worker death with MaxRetries 0 fails", policy: noRetry, events: then(toRunning, Done{Err: died}),
			want: []Action{StopTimer{}, Release{}, Record{State: Failed, Msg: died.Message}, Forget{}, SealFailure{Err: died}, CancelChildren{Force: true}}, state: Failed},
		{name: "unlimited retries keep retrying", policy: Policy{Retriable: true, MaxRetries: -1},
			events: then(toRunning, Done{Err: died}, Await{}, Reserved{}, WorkerAssigned{}, Done{Err: died}, Await{}, Reserved{}, WorkerAssigned{}, Done{Err: died}),
			want:   []Action{StopTimer{}, Release{}, Record{State: Retried, Msg: died.Message, Attempt: 2}, Retry{Err: died}, Requeue{}, CancelChildren{Force: true}},
			state:  PendingArgs, attempt: 3},
		{name: "a driver is never retried", policy: driver, events: then(toRunning, Done{Err: died}),
			want: []Action{StopTimer{}, Release{}, Record{State: Failed, Msg: died.Message}, Forget{}, SealFailure{Err: died}, CancelChildren{Force: true}}, state: Failed},
		{name: "a host error is not retried", policy: retryAll, events: then(toRunning, Done{Err: hostErr}),
			want: []Action{StopTimer{}, Release{}, Record{State: Failed, Msg: hostErr.Message}, Forget{}, SealFailure{Err: hostErr}}, state: Failed},
		{name: "a peer's attempt that failed releases there", policy: noRetry, events: then(toRunningPeer, Done{Err: died}),
			want: []Action{StopTimer{}, Release{Node: "b"}, Record{State: Failed, Msg: died.Message}, Forget{}, SealFailure{Err: died}, CancelChildren{Force: true}}, state: Failed},
		{name: "a retried peer attempt forgets the peer", policy: call, events: then(toRunningPeer, Done{Err: died}),
			state: PendingArgs, attempt: 1, want: []Action{StopTimer{}, Release{Node: "b"}, Record{State: Retried, Msg: died.Message}, Retry{Err: died}, Requeue{}, CancelChildren{Force: true}},
			check: func(t *testing.T, task *Task) {
				if task.Node != "" {
					t.Errorf("Node = %q after the retry", task.Node)
				}
			}},

		// timeouts
		{name: "a timeout kills the worker", policy: call, events: then(toRunning, Timeout{}),
			want: []Action{KillWorker{}}, state: Running},
		{name: "the killed attempt fails as a timeout, not a worker death", policy: noRetry, events: then(toRunning, Timeout{Limit: time.Second}, Done{Err: died}),
			want: []Action{StopTimer{}, Release{}, Record{State: Failed, Msg: timedOut.Message}, Forget{}, SealFailure{Err: timedOut}, CancelChildren{Force: true}}, state: Failed},
		{name: "a timeout is retried when listed", policy: retryE1, events: then(toRunning, Timeout{Limit: time.Second}, Done{Err: died}),
			want:  []Action{StopTimer{}, Release{}, Record{State: Retried, Msg: timedOut.Message}, Retry{Err: timedOut}, Requeue{}, CancelChildren{Force: true}},
			state: PendingArgs, attempt: 1, check: func(t *testing.T, task *Task) {
				if task.TimedOut {
					t.Error("the new attempt starts not timed out")
				}
			}},
		{name: "an old attempt's timer is stale", policy: call, events: then(toRunning, Done{Err: died}, Await{}, Reserved{}, WorkerAssigned{}, Timeout{Attempt: 0}),
			wantErr: ErrStale, state: Running, attempt: 1},
		{name: "a timer after the end is stale", policy: call, events: then(toFinished, Timeout{}),
			wantErr: ErrStale, state: Finished},

		// ABI violations
		{name: "a violation fails a success, unretried", policy: retryAll, events: then(toRunning, Violate{Why: "forged ID"}, Done{}),
			want: []Action{StopTimer{}, Release{}, Record{State: Failed, Msg: "forged ID"}, Forget{},
				SealFailure{Err: failure(abi.ErrorPermissionDenied, "forged ID")}}, state: Failed},
		{name: "the first violation is kept", policy: call, events: then(toRunning, Violate{Why: "first"}, Violate{Why: "second"}),
			state: Running, check: func(t *testing.T, task *Task) {
				if task.Violation != "first" {
					t.Errorf("Violation = %q", task.Violation)
				}
			}},

		// cancel in every state
		{name: "cancel while waiting for arguments", policy: call, events: then(toPendingArgs, Cancel{}),
			want: []Action{CloseCancel{}, Record{State: Cancelled, Msg: MsgCancelledBeforeRun}, Forget{}, SealFailure{Err: cancelledQ}}, state: Cancelled},
		{name: "cancel while queued for resources", policy: call, events: then(toQueued, Cancel{}),
			want:  []Action{CloseCancel{}, Dequeue{From: PendingResources}, Record{State: Cancelled, Msg: MsgCancelledBeforeRun}, Forget{}, SealFailure{Err: cancelledQ}},
			state: Cancelled},
		{name: "cancel while waiting for a worker", policy: call, events: then(toScheduled, Cancel{}),
			want:  []Action{CloseCancel{}, Dequeue{From: Scheduled}, Release{}, Record{State: Cancelled, Msg: MsgCancelledBeforeRun}, Forget{}, SealFailure{Err: cancelledQ}},
			state: Cancelled},
		{name: "cancel while running ends its waits", policy: call, events: then(toRunning, Cancel{}),
			want: []Action{CloseCancel{}, CancelInWorker{}}, state: Running},
		{name: "force-cancel while running kills the worker", policy: call, events: then(toRunning, Cancel{Force: true}),
			want: []Action{CloseCancel{}, KillWorker{}}, state: Running},
		{name: "recursive cancel cancels the children", policy: call, events: then(toRunning, Cancel{Force: true, Recursive: true}),
			want: []Action{CloseCancel{}, CancelChildren{Force: true}, KillWorker{}}, state: Running},
		{name: "a cancelled task's result is dropped", policy: call, events: then(toRunning, Cancel{}, Done{}),
			want: []Action{StopTimer{}, Release{}, Record{State: Cancelled, Msg: MsgCancelled}, Forget{}, SealFailure{Err: cancelled}}, state: Cancelled},
		{name: "a force-cancelled task is not retried", policy: call, events: then(toRunning, Cancel{Force: true}, Done{Err: died}),
			want: []Action{StopTimer{}, Release{}, Record{State: Cancelled, Msg: MsgCancelled}, Forget{}, SealFailure{Err: cancelled}}, state: Cancelled},
		{name: "a second cancel does nothing", policy: call, events: then(toRunning, Cancel{}, Cancel{}),
			want: nil, state: Running},
		{name: "a force after a cancel kills the worker", policy: call, events: then(toRunning, Cancel{}, Cancel{Force: true}),
			want: []Action{KillWorker{}}, state: Running},
		{name: "a second force does nothing", policy: call, events: then(toRunning, Cancel{Force: true}, Cancel{Force: true}),
			want: nil, state: Running},
		{name: "cancel after the end is stale", policy: call, events: then(toFinished, Cancel{}),
			wantErr: ErrStale, state: Finished},
		{name: "cancel while a peer runs it", policy: call, events: then(toRunningPeer, Cancel{}),
			want: []Action{CloseCancel{}, CancelInWorker{}}, state: Running},

		// the host fails the task itself
		{name: "failed by the host while queued", policy: call, events: then(toQueued, Fail{Err: hostErr}),
			want: []Action{Dequeue{From: PendingResources}, Record{State: Failed, Msg: hostErr.Message}, Forget{}, SealFailure{Err: hostErr}}, state: Failed},
		{name: "failed by the host while running", policy: call, events: then(toRunning, Fail{Err: hostErr}),
			want: []Action{StopTimer{}, Release{}, Record{State: Failed, Msg: hostErr.Message}, Forget{}, SealFailure{Err: hostErr}}, state: Failed},
		{name: "a cancelled task the host fails ends cancelled", policy: call, events: then(toRunning, Cancel{}, Fail{Err: hostErr}),
			want: []Action{StopTimer{}, Release{}, Record{State: Cancelled, Msg: MsgCancelled}, Forget{}, SealFailure{Err: cancelled}}, state: Cancelled},
		{name: "events after the end are stale", policy: call, events: then(toFinished, Done{}),
			wantErr: ErrStale, state: Finished},
		{name: "a worker after the end is stale", policy: call, events: then(toFinished, WorkerAssigned{}),
			wantErr: ErrStale, state: Finished},

		// lineage: a finished task runs again when its results are lost
		{name: "rebuild a finished task", policy: call, events: then(toFinished, Rebuild{Why: "lost x"}),
			want: []Action{Record{State: Retried, Msg: "lost x"}, Revive{}, Record{State: PendingArgs, Attempt: 1}, AwaitArgs{}}, state: PendingArgs, attempt: 1},
		{name: "a rebuilt task runs to the end", policy: call, events: then(toFinished, Rebuild{}, Await{}, Reserved{Node: "c"}, Done{}),
			want: []Action{StopTimer{}, Release{Node: "c"}, Record{State: Finished, Attempt: 1}, Forget{}, SealResults{}}, state: Finished, attempt: 1},
		{name: "rebuild with no retries left", policy: noRetry, events: then(toFinished, Rebuild{}),
			wantErr: ErrNoRetries, state: Finished},
		{name: "rebuild counts against MaxRetries", policy: retryAll, events: then(toFinished, Rebuild{}, Await{}, Reserved{}, WorkerAssigned{}, Done{}, Rebuild{}),
			wantErr: ErrNoRetries, state: Finished, attempt: 1},
		{name: "a failed task is not rebuilt", policy: call, events: then(toRunning, Fail{Err: hostErr}, Rebuild{}),
			wantErr: ErrStale, state: Failed},
		{name: "a live task is not rebuilt", policy: call, events: then(toRunning, Rebuild{}),
			wantErr: ErrStale, state: Running},
		{name: "a driver is not rebuilt", policy: driver, events: then(toFinished, Rebuild{}),
			wantErr: ErrNoRetries, state: Finished},

		// actor calls: queued on their actor, no resources of their own
		{name: "an actor call's arguments ready: brought here", policy: actorCall, events: []Event{Submit{}, Await{}},
			want: []Action{QueueOnActor{}}, state: PendingArgs},
		{name: "an actor call's arguments here: queued on its actor", policy: actorCall, events: toActorQueued,
			want: []Action{Record{State: Scheduled}}, state: Scheduled},
		{name: "an actor call is queued once", policy: actorCall, events: []Event{Submit{}, Await{}, Await{}},
			wantErr: ErrStale, state: PendingArgs},
		{name: "ActorReady before the arguments is stale", policy: actorCall, events: []Event{Submit{}, Await{Deps: 1}, ActorReady{}},
			wantErr: ErrStale, state: PendingArgs},
		{name: "a task's ActorReady is stale", policy: call, events: []Event{Submit{}, ActorReady{}},
			wantErr: ErrStale, state: PendingArgs},
		{name: "the actor runs the call", policy: actorCall, events: toActorRun,
			want: []Action{Record{State: Running}, Exec{}}, state: Running},
		{name: "an actor call does not block the actor's CPU", policy: actorCall, events: then(toActorRun, Block{}),
			wantErr: ErrStale, state: Running},
		{name: "an actor call done", policy: actorCall, events: then(toActorRun, Done{}),
			want: []Action{StopTimer{}, Record{State: Finished}, Forget{}, SealResults{}}, state: Finished},
		{name: "an actor call's failure is not retried by the task", policy: actorCall, events: then(toActorRun, Done{Err: died}),
			want: []Action{StopTimer{}, Record{State: Failed, Msg: died.Message}, Forget{}, SealFailure{Err: died}, CancelChildren{Force: true}}, state: Failed},
		{name: "an actor call's application error is not retried by default", policy: Policy{ActorCall: true, Retry: abi.RetryAll}, events: then(toActorRun, Done{Err: appErr}),
			want: []Action{StopTimer{}, Record{State: Failed, Msg: appErr.Message}, Forget{}, SealFailure{Err: appErr}}, state: Failed},
		{name: "an actor call's application error its options retry runs again first", policy: Policy{ActorCall: true, MaxRetries: 1, Retry: abi.RetryAll}, events: then(toActorRun, Done{Err: appErr}),
			want:  []Action{StopTimer{}, Record{State: Retried, Msg: appErr.Message}, Retry{Err: appErr}, QueueOnActor{Front: true}},
			state: Scheduled, attempt: 1},
		{name: "an actor call's retries are bounded", policy: Policy{ActorCall: true, MaxRetries: 1, Retry: abi.RetryAll}, events: then(toActorRun, Done{Err: appErr}, WorkerAssigned{}, Done{Err: appErr}),
			want: []Action{StopTimer{}, Record{State: Failed, Msg: appErr.Message, Attempt: 1}, Forget{}, SealFailure{Err: appErr}}, state: Failed, attempt: 1},
		{name: "an actor call's worker death is the actor's, not a retry of the call", policy: Policy{ActorCall: true, MaxRetries: 3, Retry: abi.RetryAll}, events: then(toActorRun, Done{Err: died}),
			want: []Action{StopTimer{}, Record{State: Failed, Msg: died.Message}, Forget{}, SealFailure{Err: died}, CancelChildren{Force: true}}, state: Failed},
		{name: "the actor restarts: the call runs again", policy: actorCall, events: then(toActorRun, ActorRetry{Why: "restarting"}),
			want:  []Action{Record{State: Retried, Msg: "restarting"}, Retry{Err: failure(abi.ErrorActorDied, "restarting")}, QueueOnActor{Front: true}},
			state: Scheduled, attempt: 1},
		{name: "a cancelled actor call is not run again", policy: actorCall, events: then(toActorRun, Cancel{}, ActorRetry{}),
			wantErr: ErrStale, state: Running},
		{name: "cancel an actor call waiting for its arguments", policy: actorCall, events: []Event{Submit{}, Await{Deps: 1}, Cancel{}},
			want:  []Action{CloseCancel{}, Dequeue{From: PendingArgs}, Record{State: Cancelled, Msg: MsgCancelledBeforeRun}, Forget{}, SealFailure{Err: cancelledQ}},
			state: Cancelled},
		{name: "an actor's creation runs again when the actor restarts", policy: driver, events: then(toFinished, Restart{Why: "its worker died"}),
			want: []Action{Record{State: Retried, Msg: "its worker died"}, Requeue{}}, state: PendingArgs, attempt: 1},
		{name: "a live creation does not restart", policy: driver, events: then(toRunning, Restart{}),
			wantErr: ErrStale, state: Running},
		{name: "the submit note goes with the first event", policy: call, events: []Event{Submit{Note: "grants: env X;"}},
			want: []Action{Record{State: PendingArgs, Msg: "grants: env X;"}, AwaitArgs{}}, state: PendingArgs},
		{name: "cancel a queued actor call", policy: actorCall, events: then(toActorQueued, Cancel{}),
			want:  []Action{CloseCancel{}, Dequeue{From: Scheduled}, Record{State: Cancelled, Msg: MsgCancelledBeforeRun}, Forget{}, SealFailure{Err: cancelledQ}},
			state: Cancelled},
		{name: "a task's ActorRetry is stale", policy: call, events: then(toRunning, ActorRetry{}),
			wantErr: ErrStale, state: Running},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			task := &Task{Policy: tt.policy}
			var got []Action
			var err error
			for i, ev := range tt.events {
				got, err = task.Step(ev)
				if err != nil && i < len(tt.events)-1 {
					t.Fatalf("event %d (%T): %v", i, ev, err)
				}
			}
			if !errors.Is(err, tt.wantErr) || (err != nil && tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("actions:\n got %#v\nwant %#v", got, tt.want)
			}
			if tt.wantErr != nil && got != nil {
				t.Errorf("a refused event returned actions %#v", got)
			}
			if task.State != tt.state || task.Attempt != tt.attempt {
				t.Errorf("state %s attempt %d, want %s attempt %d", task.State, task.Attempt, tt.state, tt.attempt)
			}
			if tt.check != nil {
				tt.check(t, task)
			}
		})
	}
}

// TestEveryEventInEveryState feeds each event to a task in each state and
// checks the invariants no sequence may break: a terminal task takes
// nothing but a Rebuild; a refused event changes nothing; a task holds
// resources only while scheduled or running; every terminal entry seals
// exactly once and leaves the table.
func TestEveryEventInEveryState(t *testing.T) {
	paths := map[string][]Event{
		"pending_args": toPendingArgs, "pending_resources": toQueued, "scheduled": toScheduled,
		"running": toRunning, "running on a peer": toRunningPeer, "blocked": then(toRunning, Block{}),
		"cancelling": then(toRunning, Cancel{}), "timed out": then(toRunning, Timeout{}),
		"finished": toFinished, "failed": then(toRunning, Done{Err: appErr}),
		"cancelled": then(toQueued, Cancel{}),
	}
	events := []Event{Submit{}, Await{}, Await{Deps: 1}, ArgReady{}, ArgFailed{Err: argFailure}, Infeasible{Why: "x"},
		Reserved{}, Reserved{Node: "b"}, WorkerAssigned{}, Unstarted{}, Unstarted{Refused: true}, Block{}, Unblock{},
		Done{}, Done{Err: appErr}, Done{Err: died}, Timeout{}, Timeout{Attempt: 7}, Violate{Why: "v"},
		Cancel{}, Cancel{Force: true, Recursive: true}, Rebuild{}, Restart{}, Fail{Err: hostErr}, ActorRetry{}, ActorReady{}}
	for _, policy := range []Policy{call, retryAll, noRetry, actorCall} {
		for name, path := range paths {
			for _, ev := range events {
				task := &Task{Policy: policy}
				for _, e := range path {
					if _, err := task.Step(e); err != nil {
						// Some paths do not apply to actor calls.
						goto next
					}
				}
				{
					before := *task
					acts, err := task.Step(ev)
					if err != nil {
						if !reflect.DeepEqual(before, *task) {
							t.Errorf("%s + %T: refused (%v) but changed the task", name, ev, err)
						}
						continue
					}
					if before.State.Terminal() {
						switch ev.(type) {
						case Rebuild, Restart:
						default:
							t.Errorf("%s + %T: a terminal task took an event", name, ev)
						}
					}
					if task.Holding && task.State != Scheduled && task.State != Running {
						t.Errorf("%s + %T: holds resources in %s", name, ev, task.State)
					}
					seals, forgets := 0, 0
					for _, a := range acts {
						switch a.(type) {
						case SealResults, SealFailure:
							seals++
						case Forget:
							forgets++
						}
					}
					if task.State.Terminal() && !before.State.Terminal() && (seals != 1 || forgets != 1) {
						t.Errorf("%s + %T: entered %s with %d seals and %d forgets", name, ev, task.State, seals, forgets)
					}
					if !task.State.Terminal() && (seals != 0 || forgets != 0) {
						t.Errorf("%s + %T: sealed in %s", name, ev, task.State)
					}
				}
			next:
			}
		}
	}
}

// TestMayRetryInPlace: an actor call's failure runs it again in place only
// when its options retry errors and retries are left.
func TestMayRetryInPlace(t *testing.T) {
	for _, tc := range []struct {
		name      string
		p         Policy
		attempt   uint32
		cancelled bool
		want      bool
	}{
		{"no retry of errors", Policy{ActorCall: true, MaxRetries: 3}, 0, false, false},
		{"retries errors, retries left", Policy{ActorCall: true, MaxRetries: 1, Retry: abi.RetryAll}, 0, false, true},
		{"retries listed errors, unlimited", Policy{ActorCall: true, MaxRetries: -1, Retry: abi.RetryListed, RetryOn: []string{"E"}}, 5, false, true},
		{"retries spent", Policy{ActorCall: true, MaxRetries: 1, Retry: abi.RetryAll}, 1, false, false},
		{"cancelled", Policy{ActorCall: true, MaxRetries: 1, Retry: abi.RetryAll}, 0, true, false},
		{"not an actor call", Policy{Retriable: true, MaxRetries: 3, Retry: abi.RetryAll}, 0, false, false},
	} {
		task := Task{Policy: tc.p, Attempt: tc.attempt, Cancelled: tc.cancelled}
		if got := task.MayRetryInPlace(); got != tc.want {
			t.Errorf("%s: MayRetryInPlace = %v, want %v", tc.name, got, tc.want)
		}
	}
}
