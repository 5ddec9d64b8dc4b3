package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/scheduler"
	"github.com/rayhost/rayhost/store"
)

// api implements the TaskService. It is the one place where host errors
// become Connect codes.
type api struct {
	h *Host

	drivers driverGate // Config.MaxDrivers, MaxDriversPerClient
}

func (h *Host) handlerOptions() []connect.HandlerOption {
	opts := []connect.HandlerOption{
		connect.WithReadMaxBytes(h.cfg.MaxMessageBytes),
		connect.WithSendMaxBytes(h.cfg.MaxMessageBytes),
		// Compressing small messages costs more than it saves (the default
		// compresses everything; it was 4% of a host's CPU in benchmarks).
		connect.WithCompressMinBytes(compressMinBytes),
	}
	// Credentials are checked before this, by the guard in front of the
	// handlers (auth.go), so that no body is read for a stranger.
	// WithReadMaxBytes bounds a message after decompression as well.
	return opts
}

// compressMinBytes: messages below this travel uncompressed.
const compressMinBytes = 8 << 10

// codeOf maps the host's sentinel errors to Connect codes.
func codeOf(err error) connect.Code {
	switch {
	case errors.Is(err, ErrModuleNotFound), errors.Is(err, ErrFunctionNotFound),
		errors.Is(err, ErrObjectNotFound), errors.Is(err, ErrTaskNotFound):
		return connect.CodeNotFound
	case errors.Is(err, ErrInvalidModule), errors.Is(err, ErrInvalidArgument), errors.Is(err, ids.ErrInvalidID):
		return connect.CodeInvalidArgument
	case errors.Is(err, ErrGetTimeout), errors.Is(err, context.DeadlineExceeded):
		return connect.CodeDeadlineExceeded
	case errors.Is(err, context.Canceled):
		return connect.CodeCanceled
	case errors.Is(err, ErrClosed):
		return connect.CodeUnavailable
	case errors.Is(err, ErrPermissionDenied):
		return connect.CodePermissionDenied
	case errors.Is(err, ErrModuleExists):
		return connect.CodeAlreadyExists
	case errors.Is(err, store.ErrStoreFull), errors.Is(err, errLimit):
		return connect.CodeResourceExhausted
	}
	return connect.CodeInternal
}

func toConnect(err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	return connect.NewError(codeOf(err), err)
}

// taskCode is the Connect code of a Get whose object is a task failure.
func taskCode(te *abi.TaskError) connect.Code {
	switch te.Kind {
	case abi.ErrorBadRequest:
		return connect.CodeInvalidArgument
	case abi.ErrorCancelled:
		return connect.CodeCanceled
	case abi.ErrorInfeasible:
		return connect.CodeFailedPrecondition
	case abi.ErrorTimeout:
		return connect.CodeAborted
	case abi.ErrorOutOfMemory, abi.ErrorLimit:
		return connect.CodeResourceExhausted
	case abi.ErrorWorkerDied:
		return connect.CodeAborted
	case abi.ErrorObjectLost:
		return connect.CodeDataLoss
	case abi.ErrorOwnerDied:
		return connect.CodeUnavailable
	case abi.ErrorHost:
		return connect.CodeInternal
	case abi.ErrorPermissionDenied:
		return connect.CodePermissionDenied
	case abi.ErrorDependency:
		if te.Cause != nil {
			return taskCode(te.Cause)
		}
	}
	return connect.CodeUnknown
}

func formatTaskError(te *abi.TaskError) string {
	var b strings.Builder
	if te.Function != "" {
		fmt.Fprintf(&b, "task %s", te.Function)
	} else {
		fmt.Fprintf(&b, "task %s", te.TaskID)
	}
	if te.Host != "" {
		fmt.Fprintf(&b, " on %s", te.Host)
	}
	fmt.Fprintf(&b, " (attempt %d) failed: %s: %s", te.Attempt, te.Kind, te.Message)
	if te.Cause != nil {
		b.WriteString("\ncaused by: " + formatTaskError(te.Cause))
	}
	if te.Stack != "" {
		b.WriteString("\n" + te.Stack)
	}
	return b.String()
}

func taskErrorProto(te *abi.TaskError) *rayhostv1.TaskError {
	if te == nil {
		return nil
	}
	return &rayhostv1.TaskError{Kind: string(te.Kind), TaskId: te.TaskID, Function: te.Function, Host: te.Host,
		Attempt: te.Attempt, Message: te.Message, Code: te.Code, Stack: te.Stack, Cause: taskErrorProto(te.Cause)}
}

// taskFailure is the Connect error of a failed task's object, with the
// TaskError attached as a detail for clients.
func taskFailure(data []byte) error {
	te := abi.DecodeTaskError(data)
	ce := connect.NewError(taskCode(te), errors.New(formatTaskError(te)))
	if d, err := connect.NewErrorDetail(taskErrorProto(te)); err == nil {
		ce.AddDetail(d)
	}
	return ce
}

func invalid(format string, args ...any) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(format, args...))
}

func (a *api) RegisterModule(ctx context.Context, req *connect.Request[rayhostv1.RegisterModuleRequest]) (*connect.Response[rayhostv1.RegisterModuleResponse], error) {
	mod, err := a.h.registerModule(ctx, req.Msg.GetWasm(), req.Msg.GetName(), req.Msg.GetReplace())
	if err != nil {
		return nil, toConnect(err)
	}
	a.h.warmPeers(ctx, mod.digest)
	res := &rayhostv1.RegisterModuleResponse{Digest: mod.digest, HasMain: mod.desc.HasMain}
	for _, f := range mod.desc.Functions {
		res.Functions = append(res.Functions, &rayhostv1.FunctionInfo{Name: f.Name, NumArgs: uint32(max(f.NumArgs, 0)), NumReturns: uint32(f.NumReturns), Generator: f.Generator})
	}
	return connect.NewResponse(res), nil
}

func parseRef(r *rayhostv1.ObjectRef) (ids.ObjectID, error) {
	if r == nil {
		return ids.ObjectID{}, invalid("missing ObjectRef")
	}
	id, err := ids.ParseObjectID(r.GetId())
	if err != nil {
		return id, invalid("%v", err)
	}
	return id, nil
}

// borrow makes the refs other hosts own known here (see objects.borrow).
func (a *api) borrow(ctx context.Context, refs []*rayhostv1.ObjectRef, parsed []ids.ObjectID) {
	for i, r := range refs {
		a.h.borrowRef(ctx, abi.Ref{ID: parsed[i], Owner: r.GetOwner()})
	}
}

func parseRefs(refs []*rayhostv1.ObjectRef) ([]ids.ObjectID, error) {
	out := make([]ids.ObjectID, len(refs))
	for i, r := range refs {
		id, err := parseRef(r)
		if err != nil {
			return nil, err
		}
		out[i] = id
	}
	return out, nil
}

func (a *api) ref(id ids.ObjectID) *rayhostv1.ObjectRef {
	return &rayhostv1.ObjectRef{Id: id.String(), Owner: a.h.addr}
}

// submitOne validates and submits one call from a client.
func (a *api) submitOne(ctx context.Context, m *rayhostv1.SubmitRequest) (*rayhostv1.SubmitResponse, error) {
	mod, err := a.h.lookupModule(ctx, m.GetModule())
	if err != nil {
		return nil, toConnect(err)
	}
	t, err := a.h.callFromRequest(m, mod)
	if err != nil {
		return nil, toConnect(err)
	}
	for i, arg := range t.args {
		a.h.borrowRef(ctx, arg.Ref)
		if arg.IsRef && !a.h.objs.Known(ctx, arg.Ref.ID) {
			return nil, toConnect(fmt.Errorf("argument %d: %w: %s", i+1, ErrObjectNotFound, arg.Ref.ID))
		}
	}
	a.h.submit(ctx, t)
	out := &rayhostv1.SubmitResponse{TaskId: t.id.String()}
	for _, id := range t.returns() {
		out.Refs = append(out.Refs, a.ref(id))
	}
	if t.gen != nil {
		out.Refs = append(out.Refs, a.ref(t.id.Return(0))) // the first item
	}
	return out, nil
}

// callFromRequest checks a client's call against its function and builds
// the task. It reads no host state but the configuration, so it can be
// fuzzed on its own.
func (h *Host) callFromRequest(m *rayhostv1.SubmitRequest, mod *module) (*task, error) {
	t := &task{id: ids.NewTaskID(), mod: mod, kind: abi.KindCall, function: m.GetFunction()}
	f, ok := mod.funcs[t.function]
	if !ok {
		return nil, fmt.Errorf("%w: %q in module %s", ErrFunctionNotFound, t.function, mod.digest[:12])
	}
	t.numReturns = f.NumReturns
	if n := int(m.GetOptions().GetNumReturns()); n != 0 && n != f.NumReturns {
		return nil, fmt.Errorf("%w: %s returns %d values, num_returns is %d", ErrInvalidArgument, t.function, f.NumReturns, n)
	}
	d := f.Defaults
	if f.Generator {
		t.gen = &generator{backpressure: int(d.Backpressure)}
	}
	o := m.GetOptions()
	t.maxRetries, t.retry, t.retryOn, t.events = d.MaxRetries, d.Retry, d.RetryOn, !d.NoEvents && !o.GetDisableEvents()
	if o != nil && o.MaxRetries != nil {
		if t.maxRetries = o.GetMaxRetries(); t.maxRetries < -1 {
			return nil, fmt.Errorf("%w: max_retries %d: use -1 (no limit), 0 or more", ErrInvalidArgument, t.maxRetries)
		}
	}
	switch {
	case o.GetRetryAllExceptions():
		t.retry, t.retryOn = abi.RetryAll, nil
	case len(o.GetRetryExceptions()) > 0:
		t.retry, t.retryOn = abi.RetryListed, o.GetRetryExceptions()
	}
	t.args = make([]abi.Arg, len(m.GetArgs()))
	for i, arg := range m.GetArgs() {
		switch k := arg.GetKind().(type) {
		case *rayhostv1.Arg_Json:
			if !json.Valid([]byte(k.Json)) {
				return nil, fmt.Errorf("%w: argument %d: not valid JSON: %q", ErrInvalidArgument, i+1, k.Json)
			}
			t.args[i] = abi.Arg{Value: abi.Value{Codec: abi.CodecJSON, Data: []byte(k.Json)}}
		case *rayhostv1.Arg_Raw:
			t.args[i] = abi.Arg{Value: abi.Value{Codec: abi.CodecRaw, Data: k.Raw}}
		case *rayhostv1.Arg_Ref:
			if k.Ref == nil {
				return nil, fmt.Errorf("%w: argument %d: missing ObjectRef", ErrInvalidArgument, i+1)
			}
			id, err := ids.ParseObjectID(k.Ref.GetId())
			if err != nil {
				return nil, fmt.Errorf("argument %d: %w", i+1, err)
			}
			t.args[i] = abi.Arg{IsRef: true, Ref: abi.Ref{ID: id, Owner: k.Ref.GetOwner()}}
		default:
			return nil, fmt.Errorf("%w: argument %d: empty (set json, raw or ref)", ErrInvalidArgument, i+1)
		}
	}
	// Grants come from the request only (never from the function's
	// registered defaults): a task submitted over the API gets what its
	// caller asked for, within what the host allows (checkGrants).
	t.limits = d.Limits
	if n := o.GetMemoryLimitBytes(); n > 0 {
		t.limits.MemoryPages = uint32(min((n+65535)/65536, 65537)) // 65537: refused by prepare
	}
	if ms := o.GetTimeoutMs(); ms > 0 {
		t.limits.TimeoutNs = min(ms, math.MaxInt64/int64(time.Millisecond)) * int64(time.Millisecond)
	}
	for _, mnt := range o.GetMounts() {
		t.grants.Mounts = append(t.grants.Mounts, abi.Mount{Host: mnt.GetHostPath(), Guest: mnt.GetGuestPath(), ReadOnly: mnt.GetReadOnly()})
	}
	for _, name := range slices.Sorted(maps.Keys(o.GetEnv())) {
		t.grants.Env = append(t.grants.Env, abi.KV{Name: name, Value: o.GetEnv()[name]})
	}
	// Per-call resources override the function's own, field by field.
	res := d.Resources
	r := o.GetResources()
	if r != nil && r.NumCpus != nil {
		if res.CPUs = r.GetNumCpus(); res.CPUs < 0 {
			return nil, fmt.Errorf("%w: num_cpus %v is negative", ErrInvalidArgument, res.CPUs)
		}
	}
	if r.GetNumGpus() != 0 {
		res.GPUs = r.GetNumGpus()
	}
	if len(r.GetCustom()) > 0 {
		res.Custom = nil
		for name, v := range r.GetCustom() {
			res.Custom = append(res.Custom, abi.Custom{Name: name, Amount: v})
		}
	}
	if err := h.prepare(t, res); err != nil {
		return nil, err
	}
	t.strategy = scheduler.Placement{Spread: d.Scheduling.Spread, NodeID: d.Scheduling.NodeID, Soft: d.Scheduling.Soft}
	if sc := o.GetScheduling(); sc != nil {
		t.strategy = scheduler.Placement{Spread: sc.GetSpread(), NodeID: sc.GetNodeId(), Soft: sc.GetSoft()}
	}
	if t.strategy.Soft && t.strategy.NodeID == "" {
		return nil, fmt.Errorf("%w: a soft node affinity needs a node_id", ErrInvalidArgument)
	}
	return t, nil
}

func (a *api) Submit(ctx context.Context, req *connect.Request[rayhostv1.SubmitRequest]) (*connect.Response[rayhostv1.SubmitResponse], error) {
	res, err := a.submitOne(ctx, req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(res), nil
}

func (a *api) SubmitStream(ctx context.Context, stream *connect.BidiStream[rayhostv1.SubmitRequest, rayhostv1.SubmitResponse]) error {
	for {
		m, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		res, err := a.submitOne(ctx, m)
		if err != nil {
			return err
		}
		if err := stream.Send(res); err != nil {
			return err
		}
	}
}

func timeoutOf(ms int64) time.Duration {
	if ms <= 0 {
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}

func valueProto(v abi.Value) *rayhostv1.Value {
	if v.Codec == abi.CodecRaw {
		return &rayhostv1.Value{Kind: &rayhostv1.Value_Raw{Raw: v.Data}}
	}
	return &rayhostv1.Value{Kind: &rayhostv1.Value_Json{Json: string(v.Data)}}
}

func (a *api) Get(ctx context.Context, req *connect.Request[rayhostv1.GetRequest]) (*connect.Response[rayhostv1.GetResponse], error) {
	refs, err := parseRefs(req.Msg.GetRefs())
	if err != nil {
		return nil, err
	}
	a.borrow(ctx, req.Msg.GetRefs(), refs)
	timeout := timeoutOf(req.Msg.GetTimeoutMs())
	if _, err := a.h.objs.WaitReady(ctx, refs, len(refs), true, timeout, nil); err != nil {
		return nil, toConnect(err)
	}
	// Refuse values too large for one message before reading (or pulling)
	// any of them.
	var size int64
	for _, id := range refs {
		if hd, err := a.h.objs.Holding(ctx, id); err == nil {
			size += hd.Size
		}
	}
	tooLarge := func(size int64) error {
		return connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("the values are %d bytes, more than one message may carry: use GetStream", size))
	}
	limit := int64(a.h.cfg.MaxMessageBytes - (1 << 20))
	if size > limit {
		return nil, tooLarge(size)
	}
	vals, err := a.h.objs.Get(ctx, refs, timeout, nil)
	if err != nil {
		return nil, toConnect(err)
	}
	res := &rayhostv1.GetResponse{Values: make([]*rayhostv1.Value, len(vals))}
	size = 0
	for i, v := range vals {
		if v.Codec == abi.CodecError {
			return nil, taskFailure(v.Data)
		}
		size += int64(len(v.Data))
		res.Values[i] = valueProto(v)
	}
	if size > limit {
		return nil, tooLarge(size)
	}
	return connect.NewResponse(res), nil
}

// getStreamChunk is the size of GetStream's chunks.
const getStreamChunk = 1 << 20

func (a *api) GetStream(ctx context.Context, req *connect.Request[rayhostv1.GetStreamRequest], stream *connect.ServerStream[rayhostv1.GetStreamResponse]) error {
	id, err := parseRef(req.Msg.GetRef())
	if err != nil {
		return err
	}
	a.borrow(ctx, []*rayhostv1.ObjectRef{req.Msg.GetRef()}, []ids.ObjectID{id})
	if _, err := a.h.objs.WaitReady(ctx, []ids.ObjectID{id}, 1, true, timeoutOf(req.Msg.GetTimeoutMs()), nil); err != nil {
		return toConnect(err)
	}
	// Small values are in memory; the rest streams from the store chunk by
	// chunk, never whole (pulled here first if other hosts hold it).
	v, inMemory, err := a.h.objs.EnsureLocal(ctx, id)
	if errors.Is(err, ErrObjectLost) || errors.Is(err, ErrOwnerDied) {
		kind := abi.ErrorObjectLost
		if errors.Is(err, ErrOwnerDied) {
			kind = abi.ErrorOwnerDied
		}
		return taskFailure((&abi.TaskError{Kind: kind, TaskID: id.Task().String(), Message: err.Error()}).Encode().Data)
	}
	if err != nil {
		return toConnect(err)
	}
	a.h.objs.MarkFetched(id)
	if inMemory {
		if v.Codec == abi.CodecError {
			return taskFailure(v.Data)
		}
		return stream.Send(&rayhostv1.GetStreamResponse{
			Header: &rayhostv1.ObjectHeader{Codec: v.Codec.String(), Size: int64(len(v.Data))}, Chunk: v.Data})
	}
	return a.h.streamFromStore(ctx, id, func(hdr *rayhostv1.ObjectHeader, chunk []byte) error {
		return stream.Send(&rayhostv1.GetStreamResponse{Header: hdr, Chunk: chunk})
	})
}

func (a *api) Put(ctx context.Context, req *connect.Request[rayhostv1.PutRequest]) (*connect.Response[rayhostv1.PutResponse], error) {
	var v abi.Value
	switch k := req.Msg.GetValue().GetKind().(type) {
	case *rayhostv1.Value_Json:
		if !json.Valid([]byte(k.Json)) {
			return nil, invalid("value: not valid JSON")
		}
		v = abi.Value{Codec: abi.CodecJSON, Data: []byte(k.Json)}
	case *rayhostv1.Value_Raw:
		v = abi.Value{Codec: abi.CodecRaw, Data: k.Raw}
	default:
		return nil, invalid("value: empty (set json or raw)")
	}
	id := ids.NewTaskID().Put(0)
	if err := a.h.objs.Seal(ctx, id, v); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&rayhostv1.PutResponse{Ref: a.ref(id)}), nil
}

func (a *api) Wait(ctx context.Context, req *connect.Request[rayhostv1.WaitRequest]) (*connect.Response[rayhostv1.WaitResponse], error) {
	refs, err := parseRefs(req.Msg.GetRefs())
	if err != nil {
		return nil, err
	}
	a.borrow(ctx, req.Msg.GetRefs(), refs)
	n := int(req.Msg.GetNumReturns())
	if n == 0 {
		n = 1
	}
	if len(refs) == 0 || n > len(refs) {
		return nil, invalid("num_returns %d not in 1..%d", n, len(refs))
	}
	seen := make(map[ids.ObjectID]bool, len(refs))
	for _, id := range refs {
		if seen[id] {
			return nil, invalid("ref %s given twice", id)
		}
		seen[id] = true
	}
	timeout := time.Duration(req.Msg.GetTimeoutMs()) * time.Millisecond
	if req.Msg.GetTimeoutMs() < 0 {
		timeout = -1
	}
	ready, err := a.h.objs.WaitReady(ctx, refs, n, false, timeout, nil)
	if err != nil && !errors.Is(err, ErrGetTimeout) {
		return nil, toConnect(err)
	}
	res := &rayhostv1.WaitResponse{}
	taken := 0
	for i, id := range refs {
		if ready[i] && taken < n {
			taken++
			res.Ready = append(res.Ready, a.ref(id))
		} else {
			res.NotReady = append(res.NotReady, a.ref(id))
		}
	}
	return connect.NewResponse(res), nil
}

func (a *api) Cancel(ctx context.Context, req *connect.Request[rayhostv1.CancelRequest]) (*connect.Response[rayhostv1.CancelResponse], error) {
	id, err := parseRef(req.Msg.GetRef())
	if err != nil {
		return nil, err
	}
	if owner := req.Msg.GetRef().GetOwner(); owner != "" && owner != a.h.addr && a.h.cluster != nil {
		// Only the owner knows the task: pass the cancel on.
		pc, err := a.h.reach(owner)
		if err != nil {
			return nil, toConnect(fmt.Errorf("%w: %v", ErrOwnerDied, err))
		}
		if _, err := pc.task.Cancel(ctx, connect.NewRequest(req.Msg)); err != nil {
			return nil, err
		}
		return connect.NewResponse(&rayhostv1.CancelResponse{}), nil
	}
	if err := a.h.cancel(id, req.Msg.GetForce(), req.Msg.GetRecursive()); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&rayhostv1.CancelResponse{}), nil
}

func (a *api) Run(ctx context.Context, req *connect.Request[rayhostv1.RunRequest], stream *connect.ServerStream[rayhostv1.RunResponse]) error {
	mod, err := a.h.lookupModule(ctx, req.Msg.GetModule())
	if err != nil {
		return toConnect(err)
	}
	if !mod.desc.HasMain {
		return invalid("module %s has no driver: register one with ray.Main", mod.digest[:12])
	}
	// A driver holds a worker but no CPU: past MaxDrivers it waits for a
	// slot, so drivers never take the workers tasks need for their CPUs.
	release, err := a.drivers.acquire(ctx, a.h, clientOf(req.Peer().Addr))
	if err != nil {
		return toConnect(err)
	}
	j := newJob()
	submitted := false
	defer func() {
		if !submitted {
			release()
			return
		}
		// The slot is free once the driver has ended, not as soon as its
		// caller left (a cancelled driver runs on until its worker stops).
		a.h.goTracked(func() {
			select {
			case <-j.ended:
			case <-a.h.done:
			}
			release()
		})
	}()
	// The driver holds no CPU while it runs, like a Ray driver: its tasks get
	// every slot.
	t := &task{id: ids.NewTaskID(), job: j, mod: mod, kind: abi.KindMain, numReturns: 1}
	for _, mnt := range req.Msg.GetMounts() {
		t.grants.Mounts = append(t.grants.Mounts, abi.Mount{Host: mnt.GetHostPath(), Guest: mnt.GetGuestPath(), ReadOnly: mnt.GetReadOnly()})
	}
	for _, name := range slices.Sorted(maps.Keys(req.Msg.GetEnv())) {
		t.grants.Env = append(t.grants.Env, abi.KV{Name: name, Value: req.Msg.GetEnv()[name]})
	}
	if t.grants, err = a.h.checkGrants(t.grants); err != nil {
		return toConnect(err)
	}
	start := time.Now()
	submitted = true
	a.h.submit(ctx, t)
	var tick <-chan time.Time
	var last *rayhostv1.RunProgress
	if req.Msg.GetProgress() {
		ticker := time.NewTicker(500 * time.Millisecond)
		defer ticker.Stop()
		tick = ticker.C
		last = &rayhostv1.RunProgress{}
	}
	for {
		evs, err := j.next(ctx, tick)
		if err != nil {
			// The client went away: stop its driver.
			_ = a.h.cancel(t.id.Return(0), true, true)
			return toConnect(err)
		}
		if last != nil {
			// Counts go before the events: the last ones precede the result.
			if p := j.progressEvent(); !proto.Equal(p, last) {
				last = p
				evs = append([]*rayhostv1.RunResponse{{Event: &rayhostv1.RunResponse_Progress{Progress: p}}}, evs...)
			}
		}
		for _, ev := range evs {
			if r := ev.GetResult(); r != nil {
				r.DurationMs = time.Since(start).Milliseconds()
			}
			if err := stream.Send(ev); err != nil {
				_ = a.h.cancel(t.id.Return(0), true, true)
				return err
			}
			if ev.GetResult() != nil {
				return nil
			}
		}
	}
}

func resourcesProto(r scheduler.Resources) *rayhostv1.Resources {
	c := float64(r.CPU) / scheduler.Unit
	out := &rayhostv1.Resources{NumCpus: &c, NumGpus: float64(r.GPU) / scheduler.Unit}
	for _, x := range r.Custom {
		if out.Custom == nil {
			out.Custom = map[string]float64{}
		}
		out.Custom[x.Name] = float64(x.Units) / scheduler.Unit
	}
	return out
}

func (a *api) Health(ctx context.Context, req *connect.Request[rayhostv1.HealthRequest]) (*connect.Response[rayhostv1.HealthResponse], error) {
	h := a.h
	h.mu.Lock()
	total, avail, workers := h.sched.Total(), h.sched.Available(), len(h.workers)
	h.mu.Unlock()
	return connect.NewResponse(&rayhostv1.HealthResponse{
		HostId: h.cfg.ID, Address: h.addr, Workers: uint32(workers),
		Total: resourcesProto(total), Available: resourcesProto(avail),
		WorkerConfinement: h.confinementProto(),
	}), nil
}

func (a *api) ListTasks(ctx context.Context, req *connect.Request[rayhostv1.ListTasksRequest]) (*connect.Response[rayhostv1.ListTasksResponse], error) {
	evs, dropped := a.h.events.list()
	want := req.Msg.GetState()
	if want != "" && !slices.Contains(stateNames[:stateRetried], want) {
		return nil, invalid("state %q: want one of %v", want, stateNames[:stateRetried])
	}
	var only *ids.TaskID
	if s := req.Msg.GetTaskId(); s != "" {
		id, err := ids.ParseTaskID(s)
		if err != nil {
			return nil, invalid("task_id %q: %v", s, err)
		}
		only = &id
	}
	var keep map[ids.TaskID]bool
	if want != "" {
		latest := map[ids.TaskID]string{}
		for _, ev := range evs {
			latest[ev.Task] = ev.State
		}
		keep = map[ids.TaskID]bool{}
		for id, s := range latest {
			keep[id] = s == want
		}
	}
	res := &rayhostv1.ListTasksResponse{Dropped: dropped}
	for _, ev := range evs {
		if keep != nil && !keep[ev.Task] || only != nil && ev.Task != *only {
			continue
		}
		pe := &rayhostv1.TaskEvent{TaskId: ev.Task.String(), Attempt: ev.Attempt + 1, Function: ev.Function, State: ev.State,
			TimeUnixNano: ev.Time.UnixNano(), Host: ev.Host, WorkerPid: int32(ev.Worker), Message: ev.Message, Grants: ev.Grants}
		if !ev.Parent.IsZero() {
			pe.ParentTaskId = ev.Parent.String()
		}
		res.Events = append(res.Events, pe)
	}
	return connect.NewResponse(res), nil
}

func (a *api) ListActors(ctx context.Context, req *connect.Request[rayhostv1.ListActorsRequest]) (*connect.Response[rayhostv1.ListActorsResponse], error) {
	res := &rayhostv1.ListActorsResponse{}
	for _, x := range a.h.listActors() {
		res.Actors = append(res.Actors, &rayhostv1.ActorInfo{ActorId: x.ID, Class: x.Class, Name: x.Name, Namespace: x.Namespace,
			State: x.State, Host: x.Host, Calls: uint64(x.Calls), Restarts: uint32(x.Restarts), Queued: uint32(x.Queued), WorkerPid: int32(x.WorkerPID)})
	}
	return connect.NewResponse(res), nil
}
