package worker

import (
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/ipc"
)

// readReturned reads the host's next frame, which must give back task.
func readReturned(t *testing.T, host *ipc.Conn, task ids.TaskID) {
	t.Helper()
	typ, payload, err := host.Read(nil)
	var c ipc.Cancel
	if err != nil || typ != ipc.TypeReturned || c.Decode(payload) != nil || c.Task != task {
		t.Fatalf("read %v %v %+v, want returned %s", typ, err, c, task)
	}
}

// TestQueuedTasksGivenBack: a task queued behind the running one goes
// back to the host when it is cancelled or asked back, when it was
// cancelled before it came, and when the running task makes a round trip;
// an actor's call never does (it runs where its actor lives).
func TestQueuedTasksGivenBack(t *testing.T) {
	w, inst, host := serveHarness(t, ipc.Exec{})
	w.early, w.wake = map[ids.TaskID]bool{}, make(chan struct{}, 1)
	plain := func() ipc.Exec { return ipc.Exec{Task: ids.NewTaskID()} }

	t.Run("asked back or cancelled", func(t *testing.T) {
		a, b := plain(), plain()
		call := ipc.Exec{Task: ids.NewTaskID(), Actor: ids.NewTaskID()}
		w.enqueue(a)
		w.enqueue(call)
		w.enqueue(b)
		done := make(chan bool, 3)
		go func() {
			done <- w.giveBack(a.Task)
			done <- w.giveBack(call.Task)
			done <- w.giveBack(a.Task) // gone already
		}()
		readReturned(t, host, a.Task)
		if !<-done || <-done || <-done {
			t.Fatal("giveBack: only the queued plain task goes back, once")
		}
		if len(w.queue) != 2 || w.queue[0].Task != call.Task || w.queue[1].Task != b.Task {
			t.Fatalf("queue %v, want the actor's call then b", w.queue)
		}
		w.queue = nil
	})
	t.Run("cancelled before it came", func(t *testing.T) {
		a := plain()
		w.early[a.Task] = true
		go w.enqueue(a)
		readReturned(t, host, a.Task)
		if len(w.queue) != 0 || w.early[a.Task] {
			t.Fatalf("queue %v early %v", w.queue, w.early)
		}
	})
	t.Run("the running task makes a round trip", func(t *testing.T) {
		a, b := plain(), plain()
		call := ipc.Exec{Task: ids.NewTaskID(), Actor: ids.NewTaskID()}
		w.enqueue(a)
		w.enqueue(call)
		w.enqueue(b)
		get := (&abi.GetRequest{TimeoutNs: -1, Refs: []abi.Ref{{ID: inst.exec.task.Put(1)}}}).Encode(nil)
		served := make(chan int64, 1)
		go func() { served <- w.serve(inst, abi.OpGet, get) }()
		// Given back first, in the same write as the call.
		readReturned(t, host, a.Task)
		readReturned(t, host, b.Task)
		typ, payload, err := host.Read(nil)
		var c ipc.Call
		if err != nil || typ != ipc.TypeCall || c.Decode(payload) != nil || c.Op != abi.OpGet || c.Seq == 0 {
			t.Fatalf("read %v %v %+v, want the get", typ, err, c)
		}
		w.seqMu.Lock()
		ch := w.pending[c.Seq]
		w.seqMu.Unlock()
		ch <- reply{Reply: ipc.Reply{Seq: c.Seq, Payload: []byte("x")}}
		if got := <-served; got != 1 {
			t.Fatalf("get: %d", got)
		}
		if len(w.queue) != 1 || w.queue[0].Task != call.Task {
			t.Fatalf("queue %v, want the actor's call only", w.queue)
		}
	})
}

// TestGiveBackBeforeNextTask: a task the read loop took out of the queue
// (an Unqueue) is reported to the host before anything of the task the
// run loop takes next: the host promotes the tasks it queued in order, and
// would take the next task's Done for the one given back.
func TestGiveBackBeforeNextTask(t *testing.T) {
	w, _, host := serveHarness(t, ipc.Exec{})
	w.early, w.wake = map[ids.TaskID]bool{}, make(chan struct{}, 1)
	a, b := ids.NewTaskID(), ids.NewTaskID()
	// The read loop took a back; its writer has not run yet.
	w.curMu.Lock()
	w.queue = []ipc.Exec{{Task: b}}
	w.giveBacks = []ids.TaskID{a}
	w.curMu.Unlock()
	ex, ok := w.dequeue()
	if !ok || ex.Task != b {
		t.Fatalf("dequeue %v %v, want b", ex.Task, ok)
	}
	go w.send(ipc.TypeDone, (&ipc.Done{Task: b}).Encode(nil))
	readReturned(t, host, a)
	typ, payload, err := host.Read(nil)
	var d ipc.Done
	if err != nil || typ != ipc.TypeDone || d.Decode(payload) != nil || d.Task != b {
		t.Fatalf("read %v %v %+v, want b's done", typ, err, d)
	}
	// And a give-back with nothing to run next is written by its own
	// writer, never by the read loop.
	w.curMu.Lock()
	w.queue = []ipc.Exec{{Task: a}}
	w.curMu.Unlock()
	if !w.giveBack(a) {
		t.Fatal("giveBack: a was queued")
	}
	readReturned(t, host, a)
}

// TestTaskComingDuringRoundTripGivenBack: a plain task that comes while
// the running task waits for the host (it may be blocked until its
// children run) goes back at once, never queued behind it.
func TestTaskComingDuringRoundTripGivenBack(t *testing.T) {
	w, inst, host := serveHarness(t, ipc.Exec{})
	w.early, w.wake = map[ids.TaskID]bool{}, make(chan struct{}, 1)
	w.current = inst.exec
	get := (&abi.GetRequest{TimeoutNs: -1, Refs: []abi.Ref{{ID: inst.exec.task.Put(1)}}}).Encode(nil)
	served := make(chan int64, 1)
	go func() { served <- w.serve(inst, abi.OpGet, get) }()
	typ, payload, err := host.Read(nil)
	var c ipc.Call
	if err != nil || typ != ipc.TypeCall || c.Decode(payload) != nil || c.Op != abi.OpGet {
		t.Fatalf("read %v %v %+v, want the get", typ, err, c)
	}
	late := ipc.Exec{Task: ids.NewTaskID()}
	go w.enqueue(late)
	readReturned(t, host, late.Task)
	w.seqMu.Lock()
	ch := w.pending[c.Seq]
	w.seqMu.Unlock()
	ch <- reply{Reply: ipc.Reply{Seq: c.Seq, Payload: []byte("x")}}
	<-served
	// Once the round trip is over, a task is queued again.
	next := ipc.Exec{Task: ids.NewTaskID()}
	w.enqueue(next)
	if len(w.queue) != 1 || w.queue[0].Task != next.Task {
		t.Fatalf("queue %v, want the next task", w.queue)
	}
}
