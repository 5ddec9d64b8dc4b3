package edge

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/kinds"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// The fake host's sentinels, declared as the host declares its own.
var (
	errModuleNotFound = kinds.Classed(kinds.ErrNotFound, "fake: module not found")
	errObjectNotFound = kinds.Classed(kinds.ErrNotFound, "fake: object not found")
	errGetTimeout     = kinds.Classed(kinds.ErrGetTimeout, "fake: get timed out")
	errObjectLost     = kinds.Classed(kinds.ErrObjectLost, "fake: object lost")
	errClosed         = kinds.Classed(kinds.ErrUnavailable, "fake: closed")
	errDenied         = kinds.Classed(kinds.ErrPermission, "fake: permission denied")
)

// fakeHost is an in-memory host: objects in a map, modules by name, a
// driver that prints its argument and ends. Objects never arrive later:
// a wait for a missing one times out at once.
type fakeHost struct {
	addr string
	mu   sync.Mutex
	objs map[ids.ObjectID]abi.Value
	lost map[ids.ObjectID]bool
	mods map[string]Module
	// what the edge asked for
	borrowed  []abi.Ref
	cancelled []ids.ObjectID
	forwarded []string
	fetched   []ids.ObjectID
	stopped   int
	drivers   []*Job
	started   chan struct{} // if set, told of each driver started
	events    []TaskEvent
	// sessions (sessions_test.go)
	fakeSessions
	srv      *httptest.Server      // serve's
	inMemory map[ids.ObjectID]bool // Local says these are in memory, whatever their size
	// Stream's: the size its header claims (a holder that lies), and its
	// chunks' size (0: 4 bytes).
	claim map[ids.ObjectID]int64
	chunk int
}

func newFakeHost() *fakeHost {
	return &fakeHost{addr: "fake:1", objs: map[ids.ObjectID]abi.Value{}, lost: map[ids.ObjectID]bool{}, fakeSessions: newFakeSessions(), mods: map[string]Module{
		"lib":  {Digest: "aa11aa11aa11aa11", Functions: []abi.FunctionInfo{{Name: "add", NumArgs: 2, NumReturns: 1}, {Name: "gen", NumArgs: -1, Generator: true}}},
		"prog": {Digest: "bb22bb22bb22bb22", HasMain: true},
	}}
}

func (f *fakeHost) set(id ids.ObjectID, v abi.Value) {
	f.mu.Lock()
	f.objs[id] = v
	f.mu.Unlock()
}

func (f *fakeHost) Addr() string { return f.addr }

func (f *fakeHost) RegisterModule(ctx context.Context, wasm []byte, name string, replace bool) (Module, error) {
	if string(wasm) != "\x00asm" {
		return Module{}, fmt.Errorf("%w: not a WebAssembly binary", kinds.Classed(kinds.ErrInvalidArgument, "fake: invalid module"))
	}
	return f.mods["lib"], nil
}

func (f *fakeHost) LookupModule(ctx context.Context, ref string) (Module, error) {
	m, ok := f.mods[ref]
	if !ok {
		return Module{}, fmt.Errorf("%w: %q", errModuleNotFound, ref)
	}
	return m, nil
}

func (f *fakeHost) Submit(ctx context.Context, c Caller, req *rayhostv1.SubmitRequest) (ids.TaskID, []ids.ObjectID, error) {
	if _, err := f.LookupModule(ctx, req.GetModule()); err != nil {
		return ids.TaskID{}, nil, err
	}
	id := ids.NewTaskID()
	f.mu.Lock()
	f.objs[id.Return(0)] = abi.Value{Codec: abi.CodecJSON, Data: []byte("5")}
	f.holders[id.Return(0)] = c.Holder
	f.mu.Unlock()
	return id, []ids.ObjectID{id.Return(0)}, nil
}

func (f *fakeHost) Borrow(ctx context.Context, ref abi.Ref) {
	f.mu.Lock()
	f.borrowed = append(f.borrowed, ref)
	f.mu.Unlock()
}

func (f *fakeHost) WaitReady(ctx context.Context, refs []ids.ObjectID, need int, failFast bool, timeout time.Duration) ([]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ready := make([]bool, len(refs))
	n := 0
	for i, id := range refs {
		_, ok := f.objs[id]
		if ready[i] = ok || f.lost[id]; ready[i] {
			n++
		}
	}
	if n < need {
		return ready, errGetTimeout
	}
	return ready, nil
}

func (f *fakeHost) Size(ctx context.Context, id ids.ObjectID) (int64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.objs[id]
	return int64(len(v.Data)), ok
}

func (f *fakeHost) Get(ctx context.Context, refs []ids.ObjectID, timeout time.Duration) ([]abi.Value, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]abi.Value, len(refs))
	for i, id := range refs {
		v, ok := f.objs[id]
		if !ok {
			return nil, fmt.Errorf("%w: %s", errObjectNotFound, id)
		}
		out[i] = v
	}
	return out, nil
}

func (f *fakeHost) Local(ctx context.Context, id ids.ObjectID) (abi.Value, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lost[id] {
		return abi.Value{}, false, fmt.Errorf("%w: %s: every holder left", errObjectLost, id)
	}
	v, ok := f.objs[id]
	if !ok {
		return abi.Value{}, false, fmt.Errorf("%w: %s", errObjectNotFound, id)
	}
	return v, len(v.Data) < 16 || v.Codec == abi.CodecError || f.inMemory[id], nil
}

func (f *fakeHost) Fetched(id ids.ObjectID) {
	f.mu.Lock()
	f.fetched = append(f.fetched, id)
	f.mu.Unlock()
}

// Stream sends the value in chunks of 4 bytes.
func (f *fakeHost) Stream(ctx context.Context, id ids.ObjectID, send func(*rayhostv1.ObjectHeader, []byte) error) error {
	f.mu.Lock()
	v := f.objs[id]
	claim, lies := f.claim[id]
	chunk := f.chunk
	f.mu.Unlock()
	hdr := &rayhostv1.ObjectHeader{Codec: v.Codec.String(), Size: int64(len(v.Data))}
	if lies {
		hdr.Size = claim
	}
	if chunk == 0 {
		chunk = 4
	}
	for data := v.Data; len(data) > 0; hdr = nil {
		n := min(chunk, len(data))
		if err := send(hdr, data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

func (f *fakeHost) Put(ctx context.Context, c Caller, id ids.ObjectID, v abi.Value) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objs[id] = v
	f.holders[id] = c.Holder
	return nil
}

func (f *fakeHost) CancelAt(ctx context.Context, owner string, req *rayhostv1.CancelRequest) (bool, error) {
	if owner == "" || owner == f.addr {
		return false, nil
	}
	f.mu.Lock()
	f.forwarded = append(f.forwarded, owner)
	f.mu.Unlock()
	if owner == "gone:1" {
		return true, fmt.Errorf("%w: %s left", kinds.Classed(kinds.ErrOwnerDied, "fake: owner died"), owner)
	}
	return true, nil
}

func (f *fakeHost) Cancel(id ids.ObjectID, force, recursive bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.objs[id]; !ok {
		return fmt.Errorf("%w: %s", kinds.Classed(kinds.ErrNotFound, "fake: task not found"), id)
	}
	f.cancelled = append(f.cancelled, id)
	return nil
}

// RunDriver refuses any mount; otherwise the driver prints its first env
// value and ends, unless its env says "wait".
func (f *fakeHost) RunDriver(ctx context.Context, mod Module, grants abi.Grants, j *Job) (func(), error) {
	if len(grants.Mounts) > 0 {
		return nil, fmt.Errorf("%w: mount %s", errDenied, grants.Mounts[0].Host)
	}
	f.mu.Lock()
	f.drivers = append(f.drivers, j)
	started := f.started
	f.mu.Unlock()
	if started != nil {
		started <- struct{}{}
	}
	stop := func() {
		f.mu.Lock()
		f.stopped++
		f.mu.Unlock()
		j.Finish((&abi.TaskError{Kind: abi.ErrorCancelled, Function: "main", Message: "stopped"}).Encode(), func(ids.ObjectID) bool { return true }, "h")
	}
	if len(grants.Env) > 0 && grants.Env[0].Value == "wait" {
		return stop, nil
	}
	task := ids.NewTaskID()
	j.Count(Submitted)
	j.Count(Finished)
	for _, kv := range grants.Env {
		j.Log(task, "main", "h", 1, []byte(kv.Name+"="+kv.Value+"\n"))
	}
	j.Finish(abi.Value{}, func(ids.ObjectID) bool { return true }, "h")
	return stop, nil
}

func (f *fakeHost) Go(fn func()) { go fn() }

func (f *fakeHost) Status() Status {
	return Status{ID: "h", Workers: 3, Total: scheduler.Resources{CPU: 4 * scheduler.Unit}, Available: scheduler.Resources{CPU: scheduler.Unit}}
}

func (f *fakeHost) TaskEvents() ([]TaskEvent, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]TaskEvent(nil), f.events...), 7
}

func (f *fakeHost) TaskStates() []string {
	return []string{"pending_args", "running", "finished", "failed"}
}

func (f *fakeHost) Actors() []Actor {
	return []Actor{{ID: "a1", Class: "Counter", Name: "c", State: "alive", Calls: 3, WorkerPID: 42}}
}

func (f *fakeHost) ClusterStatus() ([]*rayhostv1.Member, []*rayhostv1.Demand) {
	return []*rayhostv1.Member{{HostId: "h", Address: f.addr, State: "alive", Self: true}},
		[]*rayhostv1.Demand{{Resources: &rayhostv1.Resources{Custom: map[string]float64{"tpu": 1}}, Tasks: 2}}
}

// serve starts the edge of f over HTTP/2 (TLS, which bidirectional
// streams need) and returns a client of it and the done channel to close.
func serve(t *testing.T, f *fakeHost, mutate func(*Config)) (rayhostv1connect.TaskServiceClient, *Edge, chan struct{}) {
	t.Helper()
	done := make(chan struct{})
	cfg := Config{MaxMessageBytes: 2 << 20, MaxDrivers: 2, MaxDriversPerClient: 1, Done: done, ErrClosed: errClosed, SessionTTL: time.Minute}
	if mutate != nil {
		mutate(&cfg)
	}
	e, err := New(f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(e.Handler(HandlerOptions(cfg.MaxMessageBytes)...))
	srv := httptest.NewUnstartedServer(principals(mux))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	f.srv = srv
	// srv.Client trusts the server's certificate and speaks HTTP/2.
	return rayhostv1connect.NewTaskServiceClient(srv.Client(), srv.URL, connect.WithSendMaxBytes(8<<20), connect.WithReadMaxBytes(8<<20)), e, done
}
