package owner

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/host/internal/edge"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// api is the host as its API edge (host/internal/edge) sees it: the
// TaskService's handlers live there, and call the host through these
// methods. Errors go back as they are (the host's sentinels); the edge
// maps them to Connect codes.
type api struct{ h *Owner }

var _ edge.Host = api{}

// Edge returns the TaskService handlers of h.
func (h *Owner) Edge() (*edge.Edge, error) {
	return edge.New(api{h}, edge.Config{MaxMessageBytes: h.cfg.MaxMessageBytes, MaxDrivers: h.cfg.MaxDrivers,
		MaxDriversPerClient: h.cfg.MaxDriversPerClient, Done: h.done, ErrClosed: ErrClosed, SessionTTL: h.cfg.SessionTTL, Log: h.log})
}

// getStreamChunk is the size of the chunks objects stream in.
const getStreamChunk = 1 << 20

func resourcesProto(r scheduler.Resources) *rayhostv1.Resources { return edge.ResourcesProto(r) }

func formatTaskError(te *abi.TaskError) string { return edge.FormatTaskError(te) }

func (a api) Addr() string { return a.h.addr }

func moduleOf(mod *module) edge.Module {
	return edge.Module{Digest: mod.Digest, HasMain: mod.Desc.HasMain, Functions: mod.Desc.Functions, Handle: mod}
}

func (a api) RegisterModule(ctx context.Context, wasm []byte, name string, replace bool) (edge.Module, error) {
	mod, err := a.h.adm.registerModule(ctx, wasm, name, replace)
	if err != nil {
		return edge.Module{}, err
	}
	a.h.fgn.warmPeers(ctx, mod.Digest)
	return moduleOf(mod), nil
}

func (a api) LookupModule(ctx context.Context, ref string) (edge.Module, error) {
	mod, err := a.h.adm.lookupModule(ctx, ref)
	if err != nil {
		return edge.Module{}, err
	}
	return moduleOf(mod), nil
}

// BeginCall starts a call of c (sessions.go).
func (a api) BeginCall(c edge.Caller) (edge.Caller, func(), error) { return a.h.sess.begin(c) }

// Release lets go of c's holds on refs.
func (a api) Release(c edge.Caller, refs []ids.ObjectID) { a.h.sess.release(c, refs) }

// EndSession ends c's session.
func (a api) EndSession(c edge.Caller) bool { return a.h.sess.end(c) }

// Submit validates and submits one call from a client: its returns are
// held by c (its session, or anonymously).
func (a api) Submit(ctx context.Context, c edge.Caller, m *rayhostv1.SubmitRequest) (ids.TaskID, []ids.ObjectID, error) {
	mod, err := a.h.adm.lookupModule(ctx, m.GetModule())
	if err != nil {
		return ids.TaskID{}, nil, err
	}
	t, err := a.h.adm.callFromRequest(m, mod)
	if err != nil {
		return ids.TaskID{}, nil, err
	}
	for i, arg := range t.args {
		a.h.gops.borrowRef(ctx, arg.Ref)
		if arg.IsRef && !a.h.objs.Known(ctx, arg.Ref.ID) {
			return ids.TaskID{}, nil, fmt.Errorf("argument %d: %w: %s", i+1, ErrObjectNotFound, arg.Ref.ID)
		}
	}
	t.holder = a.h.sess.holder(c)
	a.h.submit(ctx, t)
	refs := t.returns()
	a.h.sess.heldAnonymously(c, refs)
	if t.gen != nil {
		refs = append(refs, t.id.Return(0)) // the first item (its items are not counted yet)
	}
	return t.id, refs, nil
}

func (a api) Borrow(ctx context.Context, r abi.Ref) { a.h.gops.borrowRef(ctx, r) }

func (a api) WaitReady(ctx context.Context, refs []ids.ObjectID, need int, failFast bool, timeout time.Duration) ([]bool, error) {
	return a.h.objs.WaitReady(ctx, refs, need, failFast, timeout, nil)
}

func (a api) Size(ctx context.Context, id ids.ObjectID) (int64, bool) {
	hd, err := a.h.objs.Holding(ctx, id)
	return abi.MaxJSON(hd.Value.Codec, hd.Size), err == nil // a client gets ints' and cbor's JSON
}

func (a api) Get(ctx context.Context, refs []ids.ObjectID, timeout time.Duration) ([]abi.Value, error) {
	return a.h.objs.Get(ctx, refs, timeout, nil)
}

// Read notes that c read vals (sessions.go).
func (a api) Read(c edge.Caller, vals []abi.Value) { a.h.sess.read(c, vals) }

func (a api) Local(ctx context.Context, id ids.ObjectID) (abi.Value, bool, error) {
	return a.h.objs.Readable(ctx, id)
}

func (a api) Fetched(id ids.ObjectID) { a.h.objs.MarkFetched(id) }

func (a api) Stream(ctx context.Context, id ids.ObjectID, send func(*rayhostv1.ObjectHeader, []byte) error) error {
	return a.h.streamFromStore(ctx, id, send)
}

// Put stores a client's value under id, held by c.
func (a api) Put(ctx context.Context, c edge.Caller, id ids.ObjectID, v abi.Value) error {
	holder := a.h.sess.holder(c)
	a.h.refs.created(holder, id)
	if err := a.h.objs.Seal(ctx, id, v); err != nil {
		a.h.refs.release(holder, []ids.ObjectID{id}, nil) // the client never gets it
		return err
	}
	a.h.refs.sealed(id, v)
	a.h.sess.heldAnonymously(c, []ids.ObjectID{id})
	return nil
}

func (a api) CancelAt(ctx context.Context, owner string, req *rayhostv1.CancelRequest) (bool, error) {
	if owner == "" || owner == a.h.addr || a.h.cluster == nil {
		return false, nil
	}
	pc, err := a.h.rem.reach(owner)
	if err != nil {
		return true, fmt.Errorf("%w: %v", ErrOwnerDied, err)
	}
	_, err = pc.task.Cancel(ctx, connect.NewRequest(req))
	return true, err
}

func (a api) Cancel(id ids.ObjectID, force, recursive bool) error {
	return a.h.cancel(id, force, recursive)
}

func (a api) RunDriver(ctx context.Context, m edge.Module, grants abi.Grants, j *edge.Job) (func(), error) {
	mod, ok := m.Handle.(*module)
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrModuleNotFound, m.Digest)
	}
	// The driver holds no CPU while it runs, like a Ray driver: its tasks get
	// every slot.
	// Its events are recorded, as Ray lists a driver's task (DRIVER_TASK).
	t := &task{id: ids.NewTaskID(), job: &job{j}, mod: mod, kind: abi.KindMain, numReturns: 1, events: true}
	var err error
	if t.grants, err = a.h.adm.checkGrants(grants); err != nil {
		return nil, err
	}
	a.h.submit(ctx, t)
	return func() { _ = a.h.cancel(t.id.Return(0), true, true) }, nil
}

func (a api) Go(fn func()) { a.h.disp.goTracked(fn) }

func (a api) Status() edge.Status {
	h := a.h
	h.mu.Lock()
	total, avail, workers := h.sched.Total(), h.sched.Available(), h.pool.Stats().Live
	h.mu.Unlock()
	return edge.Status{ID: h.cfg.ID, Workers: workers, Total: total, Available: avail, WorkerConfinement: h.wrk.confinementProto()}
}

func (a api) TaskEvents() ([]edge.TaskEvent, uint64) {
	evs, dropped := a.h.events.list()
	out := make([]edge.TaskEvent, len(evs))
	for i, ev := range evs {
		out[i] = edge.TaskEvent{Task: ev.Task, Parent: ev.Parent, Attempt: ev.Attempt, Function: ev.Function, State: ev.State,
			Time: ev.Time, Worker: ev.Worker, Host: ev.Host, Message: ev.Message, Grants: ev.Grants}
	}
	return out, dropped
}

func (a api) TaskStates() []string { return stateNames[:stateRetried] }

func (a api) Actors() []edge.Actor {
	var out []edge.Actor
	for _, x := range a.h.acts.listActors() {
		out = append(out, edge.Actor{ID: x.ID, Class: x.Class, Name: x.Name, Namespace: x.Namespace, State: x.State,
			Host: x.Host, Calls: x.Calls, Restarts: x.Restarts, Queued: x.Queued, WorkerPID: x.WorkerPID})
	}
	return out
}

func (a api) ClusterStatus() ([]*rayhostv1.Member, []*rayhostv1.Demand) {
	return a.h.rem.clusterStatus(), a.h.rem.infeasibleDemand()
}

// callFromRequest checks a client's call against its function and builds
// the task. It reads no host state but the configuration, so it can be
// fuzzed on its own.
func (ad *admission) callFromRequest(m *rayhostv1.SubmitRequest, mod *module) (*task, error) {
	h := ad.o
	t := &task{id: ids.NewTaskID(), mod: mod, kind: abi.KindCall, function: m.GetFunction()}
	f, ok := mod.Funcs[t.function]
	if !ok {
		return nil, fmt.Errorf("%w: %q in module %s", ErrFunctionNotFound, t.function, mod.Digest[:12])
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
	if err := h.adm.prepare(t, res); err != nil {
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
