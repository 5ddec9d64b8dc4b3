package worker

import (
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

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
	w := &Worker{conn: ipc.NewConn(a), pending: map[uint64]chan reply{}, closed: make(chan struct{}),
		actors: map[ids.TaskID]*instance{}, running: map[ids.TaskID]*execution{}, early: map[ids.TaskID]bool{}}
	actor := ids.NewTaskID()
	inst := &instance{conc: newConc()}
	w.actors[actor] = inst
	first := w.newExecution(ipc.Exec{Task: ids.NewTaskID(), Actor: actor, MaxResultBytes: 1 << 10}, inst)
	first.given = true
	inst.conc.serving, inst.conc.calls[first.task], inst.conc.served = true, first, 1
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
	// Until the invoke that answered idle returns, a new call waits for
	// the next invoke; after it, a call starts one.
	late := ipc.Exec{Task: ids.NewTaskID(), Actor: actor}
	if !w.deliver(late) {
		t.Fatal("a call after idle went to the run loop while the invoke still ran")
	}
	if ev := pollEvent(t, w, inst, 0); ev.Kind != abi.EventIdle {
		t.Fatalf("a call after idle reached the ending serve loop: %+v", ev)
	}
	if next := w.endServing(inst, first, nil); next == nil || next.Task != late.Task {
		t.Fatalf("the invoke ended; next %+v, want the call that came after idle", next)
	}
}

// drainHost reads the worker's frames from the host end, so the worker's
// writes never block, and passes them on.
func drainHost(t *testing.T, host *ipc.Conn) <-chan ipc.Type {
	t.Helper()
	out := make(chan ipc.Type, 1024)
	go func() {
		defer close(out)
		for {
			typ, _, err := host.Read(nil)
			if err != nil {
				return
			}
			out <- typ
		}
	}()
	return out
}

// TestConcurrentCallsAfterIdleKeepOrder: calls that arrive after poll
// answered idle, and before the invoke returned, run in arrival order and
// are not overtaken by calls that come later: the first starts the next
// invoke, the others are that invoke's first events, ahead of any later
// call (an attack on the order once starved a call for good).
func TestConcurrentCallsAfterIdleKeepOrder(t *testing.T) {
	w, inst, first, host := concHarness(t)
	drainHost(t, host)
	actor := first.limits.Actor
	for a := range w.actors {
		actor = a
	}
	if got := w.serve(inst, abi.OpDone, doneReq(first.task)); got != 0 {
		t.Fatalf("done: %d", got)
	}
	if ev := pollEvent(t, w, inst, -1); ev.Kind != abi.EventIdle {
		t.Fatalf("polled %+v, want idle", ev)
	}
	x := ipc.Exec{Task: ids.NewTaskID(), Actor: actor}
	y := ipc.Exec{Task: ids.NewTaskID(), Actor: actor}
	for _, ex := range []ipc.Exec{x, y} {
		if !w.deliver(ex) {
			t.Fatal("a call after idle went to the run loop")
		}
	}
	next := w.endServing(inst, first, nil)
	if next == nil || next.Task != x.Task {
		t.Fatalf("next %+v, want x", next)
	}
	z := ipc.Exec{Task: ids.NewTaskID(), Actor: actor}
	if !w.deliver(z) {
		t.Fatal("a call while x's invoke is about to start went to the run loop")
	}
	// x's invoke starts (as execute does) and polls: y, then z.
	ex := w.newExecution(*next, inst)
	ex.given = true
	inst.conc.mu.Lock()
	inst.conc.calls[ex.task], inst.conc.served = ex, 1
	inst.conc.mu.Unlock()
	for _, want := range []ids.TaskID{y.Task, z.Task} {
		if ev := pollEvent(t, w, inst, -1); ev.Kind != abi.EventInvoke || ev.Task != want {
			t.Fatalf("polled %+v, want the invoke of %s", ev, want)
		}
	}
}

// TestConcurrentCancelSurvivesRerun: a call cancelled before the guest
// polled it, whose invoke then returned without taking it, still runs
// cancelled, whether it starts the next invoke or is offered to it.
func TestConcurrentCancelSurvivesRerun(t *testing.T) {
	w, inst, first, host := concHarness(t)
	drainHost(t, host)
	var actor ids.TaskID
	for a := range w.actors {
		actor = a
	}
	a := ipc.Exec{Task: ids.NewTaskID(), Actor: actor}
	b := ipc.Exec{Task: ids.NewTaskID(), Actor: actor}
	for _, ex := range []ipc.Exec{a, b} {
		if !w.deliver(ex) {
			t.Fatal("not delivered")
		}
	}
	for _, task := range []ids.TaskID{a.Task, b.Task} {
		w.curMu.Lock()
		e := w.running[task]
		w.curMu.Unlock()
		e.cancelCall()
	}
	// The guest returns from its invoke without polling (an older SDK).
	next := w.endServing(inst, first, nil)
	if next == nil || next.Task != a.Task {
		t.Fatalf("next %+v, want a", next)
	}
	w.curMu.Lock()
	early := w.early[a.Task]
	w.curMu.Unlock()
	if !early {
		t.Fatal("a was cancelled, but its next execution would not start cancelled")
	}
	if ev := pollEvent(t, w, inst, 0); ev.Kind != abi.EventInvoke || ev.Task != b.Task {
		t.Fatalf("polled %+v, want b's invoke", ev)
	}
	if ev := pollEvent(t, w, inst, 0); ev.Kind != abi.EventCancel || ev.Task != b.Task {
		t.Fatalf("polled %+v, want b's cancel", ev)
	}
}

// TestConcurrentEndedCallLeavesNothing: ops a call started and never saw
// complete (sleeps of years, a get with no timeout) end with the call: no
// goroutine, pending reply or tag of it stays in the worker, so a guest
// that does this on every call cannot grow the worker.
func TestConcurrentEndedCallLeavesNothing(t *testing.T) {
	w, inst, first, host := concHarness(t)
	drainHost(t, host)
	sleep := (&abi.SleepRequest{Ns: 1 << 62}).Encode(nil)
	get := (&abi.GetRequest{Refs: []abi.Ref{{ID: ids.NewTaskID().Return(1)}}, TimeoutNs: -1}).Encode(nil)
	for tag := range uint32(abi.MaxStarted) {
		op, payload := abi.OpSleep, sleep
		if tag%2 == 1 {
			op, payload = abi.OpGet, get
		}
		if got := w.serve(inst, abi.OpStart, (&abi.StartRequest{Task: first.task, Tag: tag, Op: op, Payload: payload}).Encode(nil)); got != 0 {
			t.Fatalf("start %d: %d", tag, got)
		}
	}
	if got := w.serve(inst, abi.OpDone, doneReq(first.task)); got != 0 {
		t.Fatalf("done: %d", got)
	}
	// The ops' goroutines end with the call: wait until none is left (an
	// event, not a time), the hang guard failing the test otherwise.
	deadline := time.Now().Add(time.Minute)
	for n := startedOps(); n > 0; n = startedOps() {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines of the ended call's ops are still there", n)
		}
		runtime.Gosched()
	}
	w.seqMu.Lock()
	pending := len(w.pending)
	w.seqMu.Unlock()
	inst.conc.mu.Lock()
	tags, events := len(inst.conc.tags), len(inst.conc.events)
	inst.conc.mu.Unlock()
	if pending != 0 || tags != 0 || events != 0 {
		t.Fatalf("after the call ended: %d pending replies, %d tags, %d events", pending, tags, events)
	}
}

// TestConcurrentStaleTag: a tag reused by another call, after the call
// that used it ended with the op in flight, gets only its own outcome.
func TestConcurrentStaleTag(t *testing.T) {
	w, inst, first, host := concHarness(t)
	drainHost(t, host)
	var actor ids.TaskID
	for a := range w.actors {
		actor = a
	}
	second := ipc.Exec{Task: ids.NewTaskID(), Actor: actor}
	w.deliver(second)
	if ev := pollEvent(t, w, inst, -1); ev.Kind != abi.EventInvoke {
		t.Fatalf("polled %+v", ev)
	}
	long := (&abi.SleepRequest{Ns: 1 << 62}).Encode(nil)
	short := (&abi.SleepRequest{Ns: 1}).Encode(nil)
	if got := w.serve(inst, abi.OpStart, (&abi.StartRequest{Task: first.task, Tag: 7, Op: abi.OpSleep, Payload: long}).Encode(nil)); got != 0 {
		t.Fatalf("start: %d", got)
	}
	first.cancelCall() // its sleep completes Cancelled, unpolled
	if got := w.serve(inst, abi.OpDone, doneReq(first.task)); got != 0 {
		t.Fatalf("done: %d", got)
	}
	if got := w.serve(inst, abi.OpStart, (&abi.StartRequest{Task: second.Task, Tag: 7, Op: abi.OpSleep, Payload: short}).Encode(nil)); got != 0 {
		t.Fatalf("start of a tag the ended call used: %d", got)
	}
	ev := pollEvent(t, w, inst, -1)
	if ev.Kind != abi.EventCompletion || ev.Tag != 7 || ev.Code != 0 {
		t.Fatalf("polled %+v, want tag 7's own completion (code 0)", ev)
	}
	if ev := pollEvent(t, w, inst, 0); ev.Kind != abi.EventTimeout {
		t.Fatalf("then %+v, want nothing more", ev)
	}
}

// TestConcurrentOutput: output after the invoke's first call ended is
// tagged with a call still running, not dropped; the budget is per call
// the invoke was given.
func TestConcurrentOutput(t *testing.T) {
	w, inst, first, host := concHarness(t)
	first.limits.MaxLogBytes = 10
	var actor ids.TaskID
	for a := range w.actors {
		actor = a
	}
	second := ipc.Exec{Task: ids.NewTaskID(), Actor: actor}
	w.deliver(second)
	pollEvent(t, w, inst, -1)
	logs := make(chan ipc.Log, 8)
	go func() {
		for {
			typ, payload, err := host.Read(nil)
			if err != nil {
				close(logs)
				return
			}
			var l ipc.Log
			if typ == ipc.TypeLog && l.Decode(payload) == nil {
				l.Data = append([]byte(nil), l.Data...)
				logs <- l
			}
		}
	}()
	if got := w.serve(inst, abi.OpDone, doneReq(first.task)); got != 0 {
		t.Fatalf("done: %d", got)
	}
	lw := &logWriter{w: w, inst: inst, stream: 1}
	if _, err := lw.Write([]byte("0123456789abcdef")); err != nil { // 16 bytes: within 2 calls' 20
		t.Fatal(err)
	}
	if l := <-logs; l.Task != second.Task {
		t.Fatalf("output tagged %s, want the running call %s", l.Task, second.Task)
	}
	defer func() {
		if r := recover(); r != errOutputLimit {
			t.Fatalf("past the budget: %v, want errOutputLimit", r)
		}
	}()
	_, _ = lw.Write([]byte("0123456789"))
	t.Fatal("output past the invoke's budget was taken")
}

// startedOps counts the goroutines that wait on an op a call started
// (Worker.start's sleeps and replies).
func startedOps() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "worker.(*Worker).start.func")
}
