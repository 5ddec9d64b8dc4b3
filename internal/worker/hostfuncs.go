package worker

import (
	"context"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ipc"
)

type instanceKey struct{}

func withInstance(ctx context.Context, inst *instance) context.Context {
	return context.WithValue(ctx, instanceKey{}, inst)
}

// instantiateHostModule defines the "rayhost" import module: call and recv
// (guest-sdk/ABI.md). Both check every pointer and length against the
// guest's memory; a bad one is an error result, never a host fault.
func (w *Worker) instantiateHostModule(ctx context.Context, rt wazero.Runtime) error {
	i32, i64 := api.ValueTypeI32, api.ValueTypeI64
	_, err := rt.NewHostModuleBuilder(abi.ImportModule).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(w.hostCall), []api.ValueType{i32, i32, i32}, []api.ValueType{i64}).
		Export(abi.ImportCall).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostRecv), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		Export(abi.ImportRecv).
		Instantiate(ctx)
	return err
}

// hostRecv copies the mailbox into guest memory: recv(ptr, len) -> copied.
func hostRecv(ctx context.Context, mod api.Module, stack []uint64) {
	inst, _ := ctx.Value(instanceKey{}).(*instance)
	ptr, n := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
	stack[0] = 0
	if inst == nil {
		return
	}
	n = min(n, uint32(len(inst.mailbox)))
	if n == 0 || !mod.Memory().Write(ptr, inst.mailbox[:n]) {
		return
	}
	stack[0] = uint64(n)
}

// hostCall serves call(op, ptr, len) -> i64.
func (w *Worker) hostCall(ctx context.Context, mod api.Module, stack []uint64) {
	op := abi.Op(api.DecodeU32(stack[0]))
	ptr, n := api.DecodeU32(stack[1]), api.DecodeU32(stack[2])
	inst, _ := ctx.Value(instanceKey{}).(*instance)
	if inst == nil || inst.exec == nil {
		// A call outside an invocation (from package init, say).
		stack[0] = api.EncodeI64(int64(abi.ErrCodeBadRequest))
		return
	}
	req, ok := mod.Memory().Read(ptr, n)
	if !ok {
		stack[0] = api.EncodeI64(int64(abi.ErrCodeBadRequest))
		return
	}
	stack[0] = api.EncodeI64(w.serve(inst, op, req))
}

// serve handles one guest request; req aliases guest memory and must be
// copied before the guest runs again.
func (w *Worker) serve(inst *instance, op abi.Op, req []byte) int64 {
	e := inst.exec
	inst.mailbox = nil
	switch op {
	case abi.OpResult:
		var r abi.Result
		if r.Decode(req) != nil {
			return int64(abi.ErrCodeBadRequest)
		}
		if over(req, e.limits.MaxResultBytes) {
			return int64(abi.ErrCodeTooLarge)
		}
		e.result = append(e.result[:0], req...)
		e.gotResult = true
		return 0
	case abi.OpSubmit, abi.OpPut, abi.OpCancel, abi.OpKill:
		// Checked here so that a malformed request fails the guest's call at
		// once; then forwarded without waiting for the host.
		if err := validate(op, req); err != nil {
			return int64(abi.ErrCodeBadRequest)
		}
		if (op == abi.OpSubmit && over(req, e.limits.MaxArgBytes)) || (op == abi.OpPut && over(req, e.limits.MaxResultBytes)) {
			return int64(abi.ErrCodeTooLarge)
		}
		// Buffered: it goes out with the next frame that needs an answer
		// (a blocking call, or the invocation's end), in order.
		c := ipc.Call{Task: e.task, Op: op, Payload: req}
		if err := w.conn.Buffer(ipc.TypeCall, c.Encode(nil)); err != nil {
			return int64(abi.ErrCodeHost)
		}
		return 0
	case abi.OpSleep:
		var s abi.SleepRequest
		if s.Decode(req) != nil {
			return int64(abi.ErrCodeBadRequest)
		}
		t := time.NewTimer(time.Duration(s.Ns))
		defer t.Stop()
		select {
		case <-t.C:
			return 0
		case <-e.cancelled:
			return int64(abi.ErrCodeCancelled)
		case <-w.closed:
			return int64(abi.ErrCodeHost)
		}
	case abi.OpCancelled:
		if len(req) != 0 {
			return int64(abi.ErrCodeBadRequest)
		}
		inst.mailbox = []byte{0}
		select {
		case <-e.cancelled:
			inst.mailbox[0] = 1
		default:
		}
		return 1
	case abi.OpGet, abi.OpWait, abi.OpNext, abi.OpYield, abi.OpGetActor:
		if err := validate(op, req); err != nil {
			return int64(abi.ErrCodeBadRequest)
		}
		if op == abi.OpYield && over(req, e.limits.MaxResultBytes) {
			return int64(abi.ErrCodeTooLarge)
		}
		r := w.roundTrip(e, op, req)
		if r.Code < 0 {
			return r.Code
		}
		inst.mailbox = r.Payload
		return int64(len(r.Payload))
	}
	return int64(abi.ErrCodeUnknownOp)
}

// over reports whether req is larger than a limit (0: none).
func over(req []byte, limit uint64) bool { return limit > 0 && uint64(len(req)) > limit }

func validate(op abi.Op, req []byte) error {
	switch op {
	case abi.OpSubmit:
		var m abi.SubmitRequest
		return m.Decode(req)
	case abi.OpPut:
		var m abi.PutRequest
		return m.Decode(req)
	case abi.OpGet:
		var m abi.GetRequest
		return m.Decode(req)
	case abi.OpWait:
		var m abi.WaitRequest
		return m.Decode(req)
	case abi.OpNext:
		var m abi.NextRequest
		return m.Decode(req)
	case abi.OpCancel:
		var m abi.CancelRequest
		return m.Decode(req)
	case abi.OpYield:
		_, err := abi.DecodeValue(req)
		return err
	case abi.OpGetActor:
		var m abi.GetActorRequest
		return m.Decode(req)
	case abi.OpKill:
		var m abi.KillRequest
		return m.Decode(req)
	}
	return nil
}

// roundTrip forwards a blocking request to the host and waits for the reply.
// The host answers a cancelled task's pending calls with ErrCodeCancelled.
func (w *Worker) roundTrip(e *execution, op abi.Op, req []byte) ipc.Reply {
	ch := make(chan ipc.Reply, 1)
	w.seqMu.Lock()
	w.seq++
	seq := w.seq
	w.pending[seq] = ch
	w.seqMu.Unlock()
	c := ipc.Call{Seq: seq, Task: e.task, Op: op, Payload: req}
	if err := w.conn.Write(ipc.TypeCall, c.Encode(nil)); err != nil {
		w.seqMu.Lock()
		delete(w.pending, seq)
		w.seqMu.Unlock()
		return ipc.Reply{Code: int64(abi.ErrCodeHost)}
	}
	select {
	case r := <-ch:
		return r
	case <-w.closed:
		return ipc.Reply{Code: int64(abi.ErrCodeHost)}
	}
}
