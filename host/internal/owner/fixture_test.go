package owner

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/host/internal/edge"
	"github.com/rayhost/rayhost/host/internal/launch"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/clock"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/testutil/build"
	"github.com/rayhost/rayhost/store"
)

// The owner's tests run an Owner on the in-memory twins: store.Memory, an
// in-process launcher (workers are goroutines running the real wazero
// worker), a Fake clock (attempt timeouts fire only when a test advances
// it). There is no listener: the TaskService is reached through api{o}.

// guestPkg is the test guest (host/testdata/guest): add, fail, flaky,
// sleep, nested_sum, hang_once, three, the Counter actor…
const guestPkg = "./host/testdata/guest"

// tenMinutes (ms) is how long the tasks a test cancels or kills would run:
// far past any hang guard, so an outcome can only come from the test.
const tenMinutes = 600_000

func TestMain(m *testing.M) {
	os.Exit(build.Main(m, guestPkg, soakPkg))
}

// fixture is an Owner with the test guest registered.
type fixture struct {
	o   *Owner
	api api
	clk *clock.Fake
	// sclk times sessions (Config.SessionClock): advancing it fires no
	// attempt timeout, and clk's timers are only the attempts'.
	sclk *clock.Fake
	mod  string // the test guest's digest
}

// newFixture starts an Owner on testConfig (changed by mutate, may be nil)
// and the twins, registers the test guest and closes the owner when the
// test ends.
func newFixture(t testing.TB, mutate func(*Config)) *fixture {
	t.Helper()
	cfg := testConfig(t.TempDir())
	cfg.CacheDir = build.CacheDir()
	cfg.DisableWorkerConfinement = true
	cfg.Store = store.NewMemory()
	cfg.Launcher = launch.InProcessLauncher{}
	clk := clock.NewFake(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	cfg.Clock = clk
	sclk := clock.NewFake(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	cfg.SessionClock = sclk
	cfg.Logger = slog.New(slog.NewTextHandler(build.TestLog(t), &slog.HandlerOptions{Level: slog.LevelWarn}))
	if mutate != nil {
		mutate(&cfg)
	}
	o, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Close)
	f := &fixture{o: o, api: api{o}, clk: clk, sclk: sclk}
	mod, err := f.api.RegisterModule(hangCtx(t), build.Guest(t, guestPkg), "", false)
	if err != nil {
		t.Fatalf("registering the test guest: %v", err)
	}
	f.mod = mod.Digest
	return f
}

// hangCtx is the test's context, bounded by the hang guard.
func hangCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), build.HangGuard)
	t.Cleanup(cancel)
	return ctx
}

// testCaller is who submits and puts in the owner's tests: a client
// without a session, whose refs testConfig's AnonymousRefTTL keeps for
// the test; testHolder holds them.
var testCaller = edge.Caller{Principal: "client@test"}

const testHolder = "anon:client@test"

// ref is an ObjectRef argument: submit sends it as a ref, not a value.
type ref struct{ id ids.ObjectID }

// submit submits fn(args) with opts (may be nil) through the API and
// returns the task and its refs. Args are JSON values, or refs.
func (f *fixture) submit(t testing.TB, fn string, opts *rayhostv1.TaskOptions, args ...any) (ids.TaskID, []ids.ObjectID) {
	t.Helper()
	req := &rayhostv1.SubmitRequest{Module: f.mod, Function: fn, Options: opts}
	for _, a := range args {
		if r, ok := a.(ref); ok {
			req.Args = append(req.Args, &rayhostv1.Arg{Kind: &rayhostv1.Arg_Ref{Ref: &rayhostv1.ObjectRef{Id: r.id.String(), Owner: f.o.addr}}})
			continue
		}
		b, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		req.Args = append(req.Args, &rayhostv1.Arg{Kind: &rayhostv1.Arg_Json{Json: string(b)}})
	}
	id, refs, err := f.api.Submit(hangCtx(t), testCaller, req)
	if err != nil {
		t.Fatalf("submit %s: %v", fn, err)
	}
	return id, refs
}

// value waits for the object id and returns its value.
func (f *fixture) value(t testing.TB, id ids.ObjectID) abi.Value {
	t.Helper()
	vals, err := f.api.Get(hangCtx(t), []ids.ObjectID{id}, build.HangGuard)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return vals[0]
}

// result waits for the object id and decodes it into out; a failure fails
// the test.
func (f *fixture) result(t testing.TB, id ids.ObjectID, out any) {
	t.Helper()
	v := f.value(t, id)
	if v.Codec == abi.CodecError {
		t.Fatalf("the task failed: %+v", abi.DecodeTaskError(v.Data))
	}
	v, err := v.ToJSON() // an "ints" value, as a client gets it
	if err != nil {
		t.Fatalf("result %q: %v", v.Data, err)
	}
	if err := json.Unmarshal(v.Data, out); err != nil {
		t.Fatalf("result %q: %v", v.Data, err)
	}
}

// call submits fn(args) and decodes its one result into out.
func (f *fixture) call(t testing.TB, fn string, out any, args ...any) {
	t.Helper()
	_, refs := f.submit(t, fn, nil, args...)
	f.result(t, refs[0], out)
}

// failure waits for the object id and returns the failure it holds; a
// value fails the test.
func (f *fixture) failure(t testing.TB, id ids.ObjectID) *abi.TaskError {
	t.Helper()
	v := f.value(t, id)
	if v.Codec != abi.CodecError {
		t.Fatalf("the task succeeded with %s, want a failure", v.Data)
	}
	return abi.DecodeTaskError(v.Data)
}

// causedBy reports whether te, or a failure it carries as its cause, is
// of kind (a guest's Get that failed is its task's error, caused by the
// failure it got).
func causedBy(te *abi.TaskError, kind abi.ErrorKind) bool {
	for ; te != nil; te = te.Cause {
		if te.Kind == kind {
			return true
		}
	}
	return false
}

// waitFor waits for ch to close (up to the hang guard).
func waitFor(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(build.HangGuard):
		t.Fatalf("waited in vain for %s", what)
	}
}

// waitEvent waits for a task event match accepts, and returns it.
func (f *fixture) waitEvent(t testing.TB, what string, match func(TaskEvent) bool) TaskEvent {
	t.Helper()
	guard := time.NewTimer(build.HangGuard)
	defer guard.Stop()
	for {
		next := f.o.events.nextAdded()
		evs, _ := f.o.events.list()
		for _, ev := range evs {
			if match(ev) {
				return ev
			}
		}
		select {
		case <-next:
		case <-guard.C:
			t.Fatalf("no event: %s", what)
		}
	}
}

// waitState waits for task id's event of state (any attempt).
func (f *fixture) waitState(t testing.TB, id ids.TaskID, state taskState) TaskEvent {
	t.Helper()
	return f.waitEvent(t, fmt.Sprintf("task %s %s", id, state), func(ev TaskEvent) bool {
		return ev.Task == id && ev.State == state.String()
	})
}

// transitions lists task id's events as "state/attempt", oldest first.
func (f *fixture) transitions(id ids.TaskID) string {
	evs, _ := f.o.events.list()
	var out []string
	for _, ev := range evs {
		if ev.Task == id {
			out = append(out, fmt.Sprintf("%s/%d", ev.State, ev.Attempt))
		}
	}
	return strings.Join(out, " ")
}

// killWorker kills the worker that runs task id, as a crash would.
func (f *fixture) killWorker(t testing.TB, id ids.TaskID) {
	t.Helper()
	f.o.mu.Lock()
	var w *workerProc
	if tk := f.o.tasks[id]; tk != nil {
		w = tk.worker
	}
	f.o.mu.Unlock()
	if w == nil {
		t.Fatalf("task %s runs on no worker", id)
	}
	w.kill()
}
