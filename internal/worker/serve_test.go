package worker

import (
	"net"
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/ipc"
)

// serveHarness is a worker whose host end is a pipe, with one execution.
func serveHarness(t *testing.T, limits ipc.Exec) (*Worker, *instance, *ipc.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	w := &Worker{conn: ipc.NewConn(a), pending: map[uint64]chan reply{}, closed: make(chan struct{})}
	e := &execution{task: ids.NewTaskID(), limits: limits, cancelled: make(chan struct{})}
	return w, &instance{exec: e}, ipc.NewConn(b)
}

// TestServeRefusesHostOps: a guest that calls a host-internal op (a held
// put or yield, which only hosts send each other) or an unknown op gets
// UnknownOp, and nothing reaches the host.
func TestServeRefusesHostOps(t *testing.T) {
	w, inst, _ := serveHarness(t, ipc.Exec{})
	put := (&abi.PutRequest{ID: inst.exec.task.Put(1), Value: abi.Value{Codec: abi.CodecRaw, Data: []byte("x")}}).Encode(nil)
	for _, op := range []abi.Op{abi.OpPutHeld, abi.OpYieldHeld, 0, 18, 999} {
		if got := w.serve(inst, op, put); got != int64(abi.ErrCodeUnknownOp) {
			t.Fatalf("op %d: %d, want UnknownOp", op, got)
		}
	}
}

// TestServeByTable: requests are checked, held to their limit and then
// served or forwarded as the op table says.
func TestServeByTable(t *testing.T) {
	w, inst, host := serveHarness(t, ipc.Exec{MaxResultBytes: 64, MaxArgBytes: 64})
	task := inst.exec.task
	if got := w.serve(inst, abi.OpSubmit, []byte{0xff}); got != int64(abi.ErrCodeBadRequest) {
		t.Fatalf("malformed submit: %d", got)
	}
	if got := w.serve(inst, abi.OpCancelled, []byte{1}); got != int64(abi.ErrCodeBadRequest) {
		t.Fatalf("cancelled with a payload: %d", got)
	}
	big := (&abi.PutRequest{ID: task.Put(1), Value: abi.Value{Codec: abi.CodecRaw, Data: make([]byte, 100)}}).Encode(nil)
	if got := w.serve(inst, abi.OpPut, big); got != int64(abi.ErrCodeTooLarge) {
		t.Fatalf("put over MaxResultBytes: %d", got)
	}
	if got := w.serve(inst, abi.OpCancelled, nil); got != 1 || inst.mailbox[0] != 0 {
		t.Fatalf("cancelled: %d %v", got, inst.mailbox)
	}
	res := (&abi.Result{Values: []abi.Value{{Codec: abi.CodecJSON, Data: []byte("1")}}}).Encode(nil)
	if got := w.serve(inst, abi.OpResult, res); got != 0 || !inst.exec.gotResult {
		t.Fatalf("result: %d", got)
	}
	// A pipelined put goes to the host as a Call without a sequence number.
	small := (&abi.PutRequest{ID: task.Put(1), Value: abi.Value{Codec: abi.CodecRaw, Data: []byte("x")}}).Encode(nil)
	got := make(chan ipc.Call, 1)
	go func() {
		typ, payload, err := host.Read(nil)
		var c ipc.Call
		if err == nil && typ == ipc.TypeCall && c.Decode(payload) == nil {
			got <- c
		}
		close(got)
	}()
	if code := w.serve(inst, abi.OpPut, small); code != 0 {
		t.Fatalf("put: %d", code)
	}
	c, ok := <-got
	if !ok || c.Op != abi.OpPut || c.Seq != 0 || c.Task != task {
		t.Fatalf("forwarded: %+v %v", c, ok)
	}
}
