package edge

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// waitLog signals each "a driver waits for a slot".
type waitLog struct{ waiting chan string }

func (w waitLog) Enabled(context.Context, slog.Level) bool { return true }
func (w waitLog) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w waitLog) WithGroup(string) slog.Handler            { return w }
func (w waitLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "a driver waits for a slot" {
		w.waiting <- r.Message
	}
	return nil
}

func TestDriverGate(t *testing.T) {
	done := make(chan struct{})
	waiting := make(chan string, 8)
	cfg := &Config{MaxDrivers: 2, MaxDriversPerClient: 1, Done: done, ErrClosed: errClosed, Log: slog.New(waitLog{waiting})}
	var g driverGate
	ctx := ctxFor(t)
	relA, err := g.acquire(ctx, cfg, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	relB, err := g.acquire(ctx, cfg, "10.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	// A third client waits for a slot; a second driver of A waits for A's.
	got := make(chan error, 2)
	go func() {
		rel, err := g.acquire(ctx, cfg, "10.0.0.3")
		if err == nil {
			defer rel()
		}
		got <- err
	}()
	<-waiting
	short, cancel := context.WithCancel(ctx)
	go func() {
		_, err := g.acquire(short, cfg, "10.0.0.1")
		got <- err
	}()
	<-waiting
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "--max-drivers") {
		t.Errorf("a caller that gave up: %v", err)
	}
	relB()
	relB() // releasing twice frees one slot
	if err := <-got; err != nil {
		t.Errorf("the third client after B ended: %v", err)
	}
	// The host closing ends a wait with ErrClosed.
	go func() {
		_, err := g.acquire(ctx, cfg, "10.0.0.1")
		got <- err
	}()
	<-waiting
	close(done)
	if err := <-got; !errors.Is(err, errClosed) {
		t.Errorf("a wait when the host closed: %v", err)
	}
	relA()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.running != 0 || len(g.byPeer) != 0 {
		t.Errorf("%d running, %v", g.running, g.byPeer)
	}
}

func TestClientOf(t *testing.T) {
	for addr, want := range map[string]string{"10.1.2.3:4567": "10.1.2.3", "[::1]:80": "::1", "odd": "odd"} {
		if got := clientOf(addr); got != want {
			t.Errorf("clientOf(%q) = %q", addr, got)
		}
	}
}

// run runs mod with env and returns its events, or the call's error.
func run(ctx context.Context, c rayhostv1connect.TaskServiceClient, req *rayhostv1.RunRequest) ([]*rayhostv1.RunResponse, error) {
	s, err := c.Run(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, err
	}
	var evs []*rayhostv1.RunResponse
	for s.Receive() {
		evs = append(evs, s.Msg())
	}
	return evs, s.Err()
}

func TestRun(t *testing.T) {
	f := newFakeHost()
	c, _, _ := serve(t, f, nil)
	ctx := ctxFor(t)
	evs, err := run(ctx, c, &rayhostv1.RunRequest{Module: "prog", Env: map[string]string{"B": "2", "A": "1"}, Progress: true})
	if err != nil {
		t.Fatal(err)
	}
	var logs []string
	var progress *rayhostv1.RunProgress
	for _, ev := range evs {
		if l := ev.GetLog(); l != nil {
			logs = append(logs, string(l.GetData()))
		}
		if p := ev.GetProgress(); p != nil {
			progress = p
		}
	}
	// Env is granted in name order.
	if strings.Join(logs, "") != "A=1\nB=2\n" {
		t.Errorf("logs %q", logs)
	}
	if progress.GetSubmitted() != 1 || progress.GetFinished() != 1 {
		t.Errorf("progress %v", progress)
	}
	if r := evs[len(evs)-1].GetResult(); r == nil || r.GetError() != "" {
		t.Errorf("last event %v", evs[len(evs)-1])
	}
	// Refused grants fail the call and free the slot (one per client here).
	for range 2 {
		if _, err := run(ctx, c, &rayhostv1.RunRequest{Module: "prog", Mounts: []*rayhostv1.Mount{{HostPath: "/etc", GuestPath: "/x"}}}); codeOfCall(err) != connect.CodePermissionDenied {
			t.Errorf("a refused mount: %v", err)
		}
	}
	if _, err := run(ctx, c, &rayhostv1.RunRequest{Module: "nope"}); codeOfCall(err) != connect.CodeNotFound {
		t.Errorf("an unknown module: %v", err)
	}
	if _, err := run(ctx, c, &rayhostv1.RunRequest{Module: "prog"}); err != nil {
		t.Errorf("a driver after the refused ones: %v", err)
	}
}

// A client that goes away stops its driver; its slot is free once the
// driver has ended, and the driver waiting for it then runs.
func TestRunCallerLeaves(t *testing.T) {
	f := newFakeHost()
	f.started = make(chan struct{}, 2)
	waiting := make(chan string, 8)
	c, _, _ := serve(t, f, func(cfg *Config) { cfg.Log = slog.New(waitLog{waiting}) })
	ctx := ctxFor(t)
	// The call returns once the server answers, and a waiting driver has
	// nothing to say yet: call in the background.
	first, cancel := context.WithCancel(ctx)
	firstDone := make(chan error, 1)
	go func() {
		_, err := run(first, c, &rayhostv1.RunRequest{Module: "prog", Env: map[string]string{"A": "wait"}})
		firstDone <- err
	}()
	<-f.started
	second := make(chan error, 1)
	go func() {
		_, err := run(ctx, c, &rayhostv1.RunRequest{Module: "prog", Env: map[string]string{"A": "1"}})
		second <- err
	}()
	<-waiting
	cancel()
	if err := <-firstDone; codeOfCall(err) != connect.CodeCanceled {
		t.Errorf("the driver whose caller left: %v", err)
	}
	if err := <-second; err != nil {
		t.Errorf("the waiting driver: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped != 1 || len(f.drivers) != 2 {
		t.Errorf("stopped %d of %d drivers", f.stopped, len(f.drivers))
	}
}

func TestSubmit(t *testing.T) {
	f := newFakeHost()
	c, _, _ := serve(t, f, nil)
	ctx := ctxFor(t)
	res, err := c.Submit(ctx, connect.NewRequest(&rayhostv1.SubmitRequest{Module: "lib", Function: "add"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Msg.GetRefs()) != 1 || res.Msg.GetRefs()[0].GetOwner() != f.addr || res.Msg.GetTaskId() == "" {
		t.Errorf("submit %v", res.Msg)
	}
	_, err = c.Submit(ctx, connect.NewRequest(&rayhostv1.SubmitRequest{Module: "nope"}))
	if codeOfCall(err) != connect.CodeNotFound || !strings.Contains(err.Error(), "fake: module not found") {
		t.Errorf("an unknown module: %v", err)
	}
	st := c.SubmitStream(ctx)
	for _, mod := range []string{"lib", "lib", "nope", "lib"} {
		if err := st.Send(&rayhostv1.SubmitRequest{Module: mod, Function: "add"}); err != nil {
			break // the stream ended at the refused call
		}
	}
	_ = st.CloseRequest()
	var n int
	for {
		if _, err = st.Receive(); err != nil {
			break
		}
		n++
	}
	if n != 2 || codeOfCall(err) != connect.CodeNotFound {
		t.Errorf("stream: %d answers, then %v", n, err)
	}
}

func TestCancel(t *testing.T) {
	f := newFakeHost()
	c, _, _ := serve(t, f, nil)
	ctx := ctxFor(t)
	id := ids.NewTaskID().Return(0)
	f.set(id, abi.Value{Codec: abi.CodecJSON, Data: []byte("1")})
	cancel := func(owner string, id ids.ObjectID) error {
		_, err := c.Cancel(ctx, connect.NewRequest(&rayhostv1.CancelRequest{Ref: &rayhostv1.ObjectRef{Id: id.String(), Owner: owner}}))
		return err
	}
	if err := cancel(f.addr, id); err != nil {
		t.Errorf("a task of this host: %v", err)
	}
	if err := cancel("", ids.NewTaskID().Return(0)); codeOfCall(err) != connect.CodeNotFound {
		t.Errorf("an unknown task: %v", err)
	}
	other := ids.NewTaskID().Return(0)
	if err := cancel("other:1", other); err != nil {
		t.Errorf("a task of another host: %v", err)
	}
	// An owner that is gone: the call fails (as an internal error, as it
	// always has: owner_died is no API class).
	if err := cancel("gone:1", other); codeOfCall(err) != connect.CodeInternal || !strings.Contains(err.Error(), "owner died") {
		t.Errorf("a task of a host that left: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.cancelled) != 1 || f.cancelled[0] != id || strings.Join(f.forwarded, ",") != "other:1,gone:1" {
		t.Errorf("cancelled %v here, forwarded to %v", f.cancelled, f.forwarded)
	}
}

func TestStatusCalls(t *testing.T) {
	f := newFakeHost()
	c, _, _ := serve(t, f, nil)
	ctx := ctxFor(t)
	h, err := c.Health(ctx, connect.NewRequest(&rayhostv1.HealthRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if h.Msg.GetHostId() != "h" || h.Msg.GetAddress() != f.addr || h.Msg.GetWorkers() != 3 ||
		h.Msg.GetTotal().GetNumCpus() != 4 || h.Msg.GetAvailable().GetNumCpus() != 1 {
		t.Errorf("health %v", h.Msg)
	}
	a, b := ids.NewTaskID(), ids.NewTaskID()
	now := time.Now()
	f.mu.Lock()
	f.events = []TaskEvent{
		{Task: a, State: "pending_args", Time: now}, {Task: b, Parent: a, State: "pending_args", Time: now},
		{Task: a, State: "running", Time: now, Worker: 9}, {Task: b, State: "finished", Time: now},
	}
	f.mu.Unlock()
	list := func(req *rayhostv1.ListTasksRequest) []*rayhostv1.TaskEvent {
		t.Helper()
		res, err := c.ListTasks(ctx, connect.NewRequest(req))
		if err != nil {
			t.Fatal(err)
		}
		if res.Msg.GetDropped() != 7 {
			t.Errorf("dropped %d", res.Msg.GetDropped())
		}
		return res.Msg.GetEvents()
	}
	if evs := list(&rayhostv1.ListTasksRequest{}); len(evs) != 4 || evs[1].GetParentTaskId() != a.String() || evs[0].GetAttempt() != 1 {
		t.Errorf("all: %v", evs)
	}
	// By state: the tasks whose latest state it is, with all their events.
	if evs := list(&rayhostv1.ListTasksRequest{State: "running"}); len(evs) != 2 || evs[1].GetWorkerPid() != 9 {
		t.Errorf("running: %v", evs)
	}
	if evs := list(&rayhostv1.ListTasksRequest{TaskId: b.String()}); len(evs) != 2 || evs[0].GetTaskId() != b.String() {
		t.Errorf("of b: %v", evs)
	}
	if evs := list(&rayhostv1.ListTasksRequest{State: "pending_args"}); len(evs) != 0 {
		t.Errorf("pending: %v", evs)
	}
	actors, err := c.ListActors(ctx, connect.NewRequest(&rayhostv1.ListActorsRequest{}))
	if err != nil || len(actors.Msg.GetActors()) != 1 || actors.Msg.GetActors()[0].GetWorkerPid() != 42 {
		t.Errorf("actors %v, %v", actors, err)
	}
	members, err := c.ClusterStatus(ctx, connect.NewRequest(&rayhostv1.ClusterStatusRequest{}))
	if err != nil || len(members.Msg.GetMembers()) != 1 || !members.Msg.GetMembers()[0].GetSelf() {
		t.Errorf("members %v, %v", members, err)
	}
	if d := members.Msg.GetInfeasible(); len(d) != 1 || d[0].GetTasks() != 2 || d[0].GetResources().GetCustom()["tpu"] != 1 {
		t.Errorf("infeasible demand %v", d)
	}
}

func TestRegisterModule(t *testing.T) {
	f := newFakeHost()
	c, _, _ := serve(t, f, nil)
	res, err := c.RegisterModule(ctxFor(t), connect.NewRequest(&rayhostv1.RegisterModuleRequest{Wasm: []byte("\x00asm"), Name: "lib"}))
	if err != nil {
		t.Fatal(err)
	}
	fs := res.Msg.GetFunctions()
	// A variadic function (NumArgs -1) reports 0 arguments.
	if res.Msg.GetDigest() != f.mods["lib"].Digest || len(fs) != 2 || fs[0].GetNumArgs() != 2 || fs[1].GetNumArgs() != 0 || !fs[1].GetGenerator() {
		t.Errorf("register %v", res.Msg)
	}
}
