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
	if b := inst.body; b != nil {
		total := len(inst.mailbox) + b.n
		if int64(n) >= int64(total) {
			// A large reply: its body is asked for and read from the
			// socket straight into the guest's buffer (body.go); a
			// later recv asks again.
			if p, ok := mod.Memory().Read(ptr, uint32(total)); ok && b.into(inst.mailbox, p) {
				stack[0] = uint64(total)
			}
			return
		}
		// Asked for less: the mailbox becomes the whole reply, in the
		// worker's memory, and is copied from as any other.
		whole := make([]byte, total)
		ok := b.into(inst.mailbox, whole)
		b.release()
		inst.body, inst.mailbox = nil, nil
		if !ok {
			return
		}
		inst.mailbox = whole
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
// copied before the guest runs again. Which ops are served here, which are
// forwarded and how is abi's op table (abi.Op.Route).
func (w *Worker) serve(inst *instance, op abi.Op, req []byte) int64 {
	inst.setMailbox(nil)
	if op >= abi.OpStart && op <= abi.OpDone {
		if inst.conc == nil {
			return int64(abi.ErrCodeUnknownOp) // not a concurrent actor's instance
		}
		if abi.CheckRequest(op, req) != nil {
			return int64(abi.ErrCodeBadRequest)
		}
		return w.serveConcurrent(inst, op, req)
	}
	return w.serveAs(inst, inst.exec, op, req)
}

// serveAs serves op for execution e (the invocation's, or one call of a
// concurrent actor's instance).
func (w *Worker) serveAs(inst *instance, e *execution, op abi.Op, req []byte) int64 {
	inst.setMailbox(nil)
	route := op.Route()
	if route != abi.RouteWorker && route != abi.RoutePipelined && route != abi.RouteRoundTrip || op >= abi.OpStart && op <= abi.OpDone {
		return int64(abi.ErrCodeUnknownOp) // and host-internal ops
	}
	// Every request is checked here, so a malformed one fails the guest's
	// call at once and never reaches the host.
	if abi.CheckRequest(op, req) != nil {
		return int64(abi.ErrCodeBadRequest)
	}
	if over(req, e.limit(op.Limit())) {
		return int64(abi.ErrCodeTooLarge)
	}
	switch route {
	case abi.RoutePipelined:
		// Buffered: it goes out with the next frame that needs an answer
		// (a blocking call, or the invocation's end), in order.
		c := ipc.Call{Task: e.task, Op: op, Payload: req}
		if err := w.conn.BufferCall(&c, nil); err != nil {
			return int64(abi.ErrCodeHost)
		}
		return 0
	case abi.RouteRoundTrip:
		r := w.roundTrip(e, op, req)
		if r.Code < 0 {
			if r.body != nil {
				r.body.release()
			}
			return r.Code
		}
		inst.mailbox, inst.body = r.Payload, r.body
		return int64(r.size())
	}
	switch op {
	case abi.OpResult:
		e.result = append(e.result[:0], req...)
		e.gotResult = true
		return 0
	case abi.OpSleep:
		var s abi.SleepRequest
		_ = s.Decode(req) // checked above
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
	case abi.OpPutData:
		return w.putData(inst, e, req)
	case abi.OpCancelled:
		inst.mailbox = []byte{0}
		select {
		case <-e.cancelled:
			inst.mailbox[0] = 1
		default:
		}
		return 1
	}
	return int64(abi.ErrCodeUnknownOp)
}

// putData serves op put_data: the put's bytes are read where they are in
// the guest's memory and go to the host as an ordinary put, buffered as a
// put is, never copied into a request first.
func (w *Worker) putData(inst *instance, e *execution, req []byte) int64 {
	var p abi.PutDataRequest
	_ = p.Decode(req) // checked above
	data, ok := inst.mod.Memory().Read(p.Ptr, p.Len)
	if !ok {
		return int64(abi.ErrCodeBadRequest) // not inside the guest's memory
	}
	head := p.PutHead(nil)
	if max := e.limit(abi.LimitResult); max > 0 && uint64(len(head))+uint64(len(data)) > max {
		return int64(abi.ErrCodeTooLarge) // as the same put by op put
	}
	c := ipc.Call{Task: e.task, Op: abi.OpPut, Payload: head}
	if err := w.conn.BufferCall(&c, data); err != nil {
		return int64(abi.ErrCodeHost)
	}
	return 0
}

// limit is the Exec limit of a kind (0: none).
func (e *execution) limit(l abi.Limit) uint64 {
	switch l {
	case abi.LimitArgs:
		return e.limits.MaxArgBytes
	case abi.LimitResult:
		return e.limits.MaxResultBytes
	}
	return 0
}

// over reports whether req is larger than a limit (0: none).
func over(req []byte, limit uint64) bool { return limit > 0 && uint64(len(req)) > limit }

// roundTrip forwards a blocking request to the host and waits for the reply.
// The host answers a cancelled task's pending calls with ErrCodeCancelled.
func (w *Worker) roundTrip(e *execution, op abi.Op, req []byte) reply {
	// Counted before sendRoundTrip gives back what is queued: a task
	// that comes after that goes back at once (enqueue).
	w.curMu.Lock()
	w.waiting++
	w.curMu.Unlock()
	defer func() {
		w.curMu.Lock()
		w.waiting--
		w.curMu.Unlock()
	}()
	ch, seq, code := w.sendRoundTrip(e, op, req)
	if code < 0 {
		return reply{Reply: ipc.Reply{Code: code}}
	}
	return w.awaitReply(ch, seq)
}

// sendRoundTrip sends a blocking request to the host; awaitReply waits for
// its reply.
func (w *Worker) sendRoundTrip(e *execution, op abi.Op, req []byte) (chan reply, uint64, int64) {
	w.giveBackQueued() // sent before the call, in the same write
	ch := make(chan reply, 1)
	w.seqMu.Lock()
	w.seq++
	seq := w.seq
	w.pending[seq] = ch
	w.seqMu.Unlock()
	c := ipc.Call{Seq: seq, Task: e.task, Op: op, Payload: req}
	if err := w.conn.WriteCall(&c, nil); err != nil {
		w.seqMu.Lock()
		delete(w.pending, seq)
		w.seqMu.Unlock()
		return nil, 0, int64(abi.ErrCodeHost)
	}
	return ch, seq, 0
}

func (w *Worker) awaitReply(ch chan reply, seq uint64) reply {
	select {
	case r := <-ch:
		return r
	case <-w.closed:
		return reply{Reply: ipc.Reply{Code: int64(abi.ErrCodeHost)}}
	}
}
