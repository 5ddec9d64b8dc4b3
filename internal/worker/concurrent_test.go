package worker

import (
	"net"
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/ipc"
)

// concHarness is a worker with a concurrent actor's instance serving one
// call (as execute sets it up), and the host end of its connection.
func concHarness(t *testing.T) (*Worker, *instance, *execution, *ipc.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	w := &Worker{conn: ipc.NewConn(a), pending: map[uint64]chan ipc.Reply{}, closed: make(chan struct{}),
		actors: map[ids.TaskID]*instance{}, running: map[ids.TaskID]*execution{}, early: map[ids.TaskID]bool{}}
	actor := ids.NewTaskID()
	inst := &instance{conc: newConc()}
	w.actors[actor] = inst
	first := w.newExecution(ipc.Exec{Task: ids.NewTaskID(), Actor: actor, MaxResultBytes: 1 << 10}, inst)
	first.given = true
	inst.conc.serving, inst.conc.calls[first.task] = true, first
	inst.exec = first
	return w, inst, first, ipc.NewConn(b)
}

func pollEvent(t *testing.T, w *Worker, inst *instance, timeoutNs int64) abi.PollEvent {
	t.Helper()
	n := w.serve(inst, abi.OpPoll, (&abi.PollRequest{TimeoutNs: timeoutNs}).Encode(nil))
	var ev abi.PollEvent
	if n < 0 || ev.Decode(inst.mailbox) != nil {
		t.Fatalf("poll: %d", n)
	}
	return ev
}

func doneReq(task ids.TaskID) []byte {
	res := (&abi.Result{Values: []abi.Value{{Codec: abi.CodecJSON, Data: []byte("true")}}}).Encode(nil)
	return (&abi.DoneRequest{Task: task, Status: abi.StatusOK, Result: res}).Encode(nil)
}

// TestConcurrentOpsNeedAConcurrentInstance: an instance that is not a
// concurrent actor's answers start, poll and done with UnknownOp, which
// the SDK takes as "one call at a time".
func TestConcurrentOpsNeedAConcurrentInstance(t *testing.T) {
	w, inst, _ := serveHarness(t, ipc.Exec{})
	for _, op := range []abi.Op{abi.OpStart, abi.OpPoll, abi.OpDone} {
		if got := w.serve(inst, op, nil); got != int64(abi.ErrCodeUnknownOp) {
			t.Fatalf("op %s: %d, want UnknownOp", op, got)
		}
	}
}

// TestConcurrentRefusesForeignCalls: a guest cannot end, or act for, a
// call it was never given; nothing reaches the host.
func TestConcurrentRefusesForeignCalls(t *testing.T) {
	w, inst, _, _ := concHarness(t)
	stranger := ids.NewTaskID()
	if got := w.serve(inst, abi.OpDone, doneReq(stranger)); got != int64(abi.ErrCodeBadRequest) {
		t.Fatalf("done for a call never given: %d", got)
	}
	sleep := (&abi.SleepRequest{Ns: 1}).Encode(nil)
	if got := w.serve(inst, abi.OpStart, (&abi.StartRequest{Task: stranger, Tag: 1, Op: abi.OpSleep, Payload: sleep}).Encode(nil)); got != int64(abi.ErrCodeBadRequest) {
		t.Fatalf("start for a call never given: %d", got)
	}
	// A call handed over but not yet polled is not given either.
	queued := w.newExecution(ipc.Exec{Task: ids.NewTaskID()}, inst)
	inst.conc.calls[queued.task] = queued
	if got := w.serve(inst, abi.OpDone, doneReq(queued.task)); got != int64(abi.ErrCodeBadRequest) {
		t.Fatalf("done for a call not yet polled: %d", got)
	}
	if got := w.serve(inst, abi.OpStart, []byte{0xff}); got != int64(abi.ErrCodeBadRequest) {
		t.Fatalf("malformed start: %d", got)
	}
	result := (&abi.StartRequest{Task: stranger, Op: abi.OpResult, Payload: nil}).Encode(nil)
	if got := w.serve(inst, abi.OpStart, result); got != int64(abi.ErrCodeBadRequest) {
		t.Fatalf("start of op result: %d", got)
	}
}

// TestConcurrentFloodOfStarts: blocking ops started and not polled are
// bounded per call; a tag in flight cannot be reused.
func TestConcurrentFloodOfStarts(t *testing.T) {
	w, inst, first, _ := concHarness(t)
	sleep := (&abi.SleepRequest{Ns: 1 << 62}).Encode(nil) // never ends by itself
	start := func(tag uint32) int64 {
		return w.serve(inst, abi.OpStart, (&abi.StartRequest{Task: first.task, Tag: tag, Op: abi.OpSleep, Payload: sleep}).Encode(nil))
	}
	for tag := range uint32(abi.MaxStarted) {
		if got := start(tag); got != 0 {
			t.Fatalf("start %d: %d", tag, got)
		}
	}
	if got := start(0); got != int64(abi.ErrCodeBadRequest) && got != int64(abi.ErrCodeTooLarge) {
		t.Fatalf("a tag in flight again: %d", got)
	}
	if got := start(abi.MaxStarted); got != int64(abi.ErrCodeTooLarge) {
		t.Fatalf("start past the bound: %d, want TooLarge", got)
	}
	// Cancelling the call ends its sleeps: each completes with Cancelled.
	first.cancelCall()
	seen := map[uint32]bool{}
	for len(seen) < abi.MaxStarted {
		ev := pollEvent(t, w, inst, -1)
		switch ev.Kind {
		case abi.EventCancel:
			if ev.Task != first.task {
				t.Fatalf("cancel of %s", ev.Task)
			}
		case abi.EventCompletion:
			if ev.Code != int64(abi.ErrCodeCancelled) {
				t.Fatalf("completion %d: code %d", ev.Tag, ev.Code)
			}
			seen[ev.Tag] = true
		default:
			t.Fatalf("event %d", ev.Kind)
		}
	}
}

// TestConcurrentServeLoop: a call that arrives while the instance serves
// is polled as an event; done sends its Done frame; poll without calls
// answers idle, after which a new call starts an invoke again.
func TestConcurrentServeLoop(t *testing.T) {
	w, inst, first, host := concHarness(t)
	var actor ids.TaskID
	for id := range w.actors {
		actor = id
	}
	second := ipc.Exec{Task: ids.NewTaskID(), Actor: actor, Invocation: []byte("inv")}
	if !w.deliver(second) {
		t.Fatal("a call for a serving instance went to the run loop")
	}
	if ev := pollEvent(t, w, inst, 0); ev.Kind != abi.EventInvoke || ev.Task != second.Task || string(ev.Data) != "inv" {
		t.Fatalf("polled %+v", ev)
	}
	if ev := pollEvent(t, w, inst, 0); ev.Kind != abi.EventTimeout {
		t.Fatalf("nothing left: %+v", ev)
	}
	frames := make(chan ipc.Done, 2)
	go func() {
		for range 2 {
			typ, payload, err := host.Read(nil)
			var d ipc.Done
			if err != nil || typ != ipc.TypeDone || d.Decode(payload) != nil {
				close(frames)
				return
			}
			frames <- d
		}
	}()
	for _, task := range []ids.TaskID{second.Task, first.task} {
		if got := w.serve(inst, abi.OpDone, doneReq(task)); got != 0 {
			t.Fatalf("done %s: %d", task, got)
		}
		if d, ok := <-frames; !ok || d.Task != task || d.Status != abi.StatusOK {
			t.Fatalf("Done frame %+v (%v), want %s's", d, ok, task)
		}
	}
	if got := w.serve(inst, abi.OpDone, doneReq(second.Task)); got != int64(abi.ErrCodeBadRequest) {
		t.Fatalf("done twice: %d", got)
	}
	if ev := pollEvent(t, w, inst, -1); ev.Kind != abi.EventIdle {
		t.Fatalf("no call left: %+v, want idle", ev)
	}
	if w.deliver(ipc.Exec{Task: ids.NewTaskID(), Actor: actor}) {
		t.Fatal("a call after idle went to the ended serve loop")
	}
}
