package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
)

// hangGuard bounds a wait that would otherwise hang; it is no expectation
// of speed.
const hangGuard = 2 * time.Minute

// fakeHost is a TaskService that makes refs and records the session
// calls it gets.
type fakeHost struct {
	rayhostv1connect.UnimplementedTaskServiceHandler
	ttlMs int64

	mu         sync.Mutex
	next       int
	sessions   []string // the session header of each call
	releases   [][]string
	keepAlives int
	ended      []string
	changed    chan struct{} // closed and replaced at each call
}

func (f *fakeHost) saw(h http.Header) {
	f.sessions = append(f.sessions, h.Get(sessionHeader))
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeHost) ref() *rayhostv1.ObjectRef {
	f.next++
	return &rayhostv1.ObjectRef{Id: fmt.Sprintf("%032x%08x", f.next, 1), Owner: "fake"}
}

func (f *fakeHost) Put(_ context.Context, req *connect.Request[rayhostv1.PutRequest]) (*connect.Response[rayhostv1.PutResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.saw(req.Header())
	return connect.NewResponse(&rayhostv1.PutResponse{Ref: f.ref()}), nil
}

func (f *fakeHost) Submit(_ context.Context, req *connect.Request[rayhostv1.SubmitRequest]) (*connect.Response[rayhostv1.SubmitResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.saw(req.Header())
	return connect.NewResponse(&rayhostv1.SubmitResponse{TaskId: "t", Refs: []*rayhostv1.ObjectRef{f.ref(), f.ref()}}), nil
}

func (f *fakeHost) Wait(_ context.Context, req *connect.Request[rayhostv1.WaitRequest]) (*connect.Response[rayhostv1.WaitResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.saw(req.Header())
	refs := req.Msg.GetRefs()
	return connect.NewResponse(&rayhostv1.WaitResponse{Ready: refs[1:], NotReady: refs[:1]}), nil
}

func (f *fakeHost) Release(_ context.Context, req *connect.Request[rayhostv1.ReleaseRequest]) (*connect.Response[rayhostv1.ReleaseResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.saw(req.Header())
	var ids []string
	for _, r := range req.Msg.GetRefs() {
		ids = append(ids, r.GetId())
	}
	f.releases = append(f.releases, ids)
	return connect.NewResponse(&rayhostv1.ReleaseResponse{}), nil
}

func (f *fakeHost) KeepAlive(_ context.Context, req *connect.Request[rayhostv1.KeepAliveRequest]) (*connect.Response[rayhostv1.KeepAliveResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.saw(req.Header())
	f.keepAlives++
	return connect.NewResponse(&rayhostv1.KeepAliveResponse{TtlMs: f.ttlMs}), nil
}

func (f *fakeHost) EndSession(_ context.Context, req *connect.Request[rayhostv1.EndSessionRequest]) (*connect.Response[rayhostv1.EndSessionResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.saw(req.Header())
	f.ended = append(f.ended, req.Header().Get(sessionHeader))
	return connect.NewResponse(&rayhostv1.EndSessionResponse{Ended: true}), nil
}

// released lists every ID released so far, in order.
func (f *fakeHost) released() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Concat(f.releases...)
}

// waitFor waits until cond holds (checked at each call the host gets),
// running poke (runtime.GC, say) while it does not.
func (f *fakeHost) waitFor(t *testing.T, what string, cond func() bool, poke func()) {
	t.Helper()
	guard := time.After(hangGuard)
	for {
		f.mu.Lock()
		ch := f.changed
		f.mu.Unlock()
		if cond() {
			return
		}
		if poke != nil {
			poke()
		}
		select {
		case <-ch:
		case <-time.After(10 * time.Millisecond): // poke again (cleanups run behind GC)
		case <-guard:
			t.Fatalf("waited in vain for %s", what)
		}
	}
}

func newFake(t *testing.T, ttlMs int64) (*fakeHost, *Client) {
	t.Helper()
	f, srv := newFakeServer(t, ttlMs)
	c := New(srv.URL, WithHTTPClient(srv.Client()))
	t.Cleanup(func() { _ = c.Close() })
	return f, c
}

func newFakeServer(t *testing.T, ttlMs int64) (*fakeHost, *httptest.Server) {
	t.Helper()
	f := &fakeHost{ttlMs: ttlMs, changed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle(rayhostv1connect.NewTaskServiceHandler(f))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv
}

func gc() { runtime.GC() }

// TestSessionIDOnEveryCall: every call of a Client carries its one
// session ID, 32 hex digits; two Clients have two.
func TestSessionIDOnEveryCall(t *testing.T) {
	f, c := newFake(t, 60_000)
	ctx := t.Context()
	if _, err := c.Put(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Submit(ctx, "m", "f"); err != nil {
		t.Fatal(err)
	}
	f.waitFor(t, "the first keepalive", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.keepAlives > 0 }, nil)
	f.mu.Lock()
	ids := slices.Clone(f.sessions)
	f.mu.Unlock()
	if ok, _ := regexp.MatchString(`^[0-9a-f]{32}$`, ids[0]); !ok {
		t.Fatalf("session ID %q", ids[0])
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("session IDs %v: want one", ids)
		}
	}
	other := New("http://127.0.0.1:1")
	defer other.Close()
	if other.sess.id == c.sess.id {
		t.Fatal("two Clients share a session ID")
	}
}

// TestDroppedRefsAreReleasedInBatches: refs the program no longer reaches
// are released, each once, in far fewer calls than refs; refs it still
// holds are not.
func TestDroppedRefsAreReleasedInBatches(t *testing.T) {
	f, c := newFake(t, 60_000)
	ctx := t.Context()
	kept, err := c.Put(ctx, "kept")
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	var dropped []string
	for range n / 2 {
		refs, err := c.SubmitCall(ctx, Call{Module: "m", Function: "f"})
		if err != nil {
			t.Fatal(err)
		}
		dropped = append(dropped, refs[0].ID, refs[1].ID)
	}
	f.waitFor(t, "the dropped refs to be released", func() bool { return len(f.released()) >= n }, gc)
	got := f.released()
	if len(got) != n {
		t.Fatalf("%d releases for %d refs", len(got), n)
	}
	slices.Sort(got)
	slices.Sort(dropped)
	if !slices.Equal(got, dropped) {
		t.Fatal("the released refs are not the dropped ones")
	}
	f.mu.Lock()
	calls := len(f.releases)
	f.mu.Unlock()
	if calls > n/10 {
		t.Fatalf("%d Release calls for %d refs: not batched", calls, n)
	}
	runtime.KeepAlive(kept)
}

// TestReleaseOnceForEveryCopy: Release covers every copy of a ref, once;
// the copies' cleanup adds nothing; Client.Release sends at once and
// skips what was released.
func TestReleaseOnceForEveryCopy(t *testing.T) {
	f, c := newFake(t, 60_000)
	ctx := t.Context()
	a, err := c.Put(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	copies := []ObjectRef{a, a, a}
	copies[1].Release()
	copies[2].Release()
	a.Release()
	f.waitFor(t, "a's release", func() bool { return len(f.released()) == 1 }, nil)
	b, err := c.Put(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Release(ctx, b, b, a, ObjectRef{ID: "untracked"}); err != nil {
		t.Fatal(err)
	}
	b.Release()
	if got := f.released(); !slices.Equal(got, []string{a.ID, b.ID, "untracked"}) {
		t.Fatalf("released %v", got)
	}
	// Nothing more comes from their cleanups.
	a, b, copies = ObjectRef{}, ObjectRef{}, nil
	for range 5 {
		gc()
	}
	if _, err := c.Put(ctx, 3); err != nil { // a call after, for the order
		t.Fatal(err)
	}
	c.sess.flush()
	if got := f.released(); len(got) != 3 {
		t.Fatalf("released %v after the cleanups", got)
	}
}

// TestWaitReturnsTheGivenRefs: the refs Wait returns share the handles of
// those given: holding a ready ref keeps its object.
func TestWaitReturnsTheGivenRefs(t *testing.T) {
	_, c := newFake(t, 60_000)
	ctx := t.Context()
	refs, err := c.SubmitCall(ctx, Call{Module: "m", Function: "f"})
	if err != nil {
		t.Fatal(err)
	}
	ready, notReady, err := c.Wait(ctx, refs, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ready) != 1 || ready[0] != refs[1] || ready[0].h == nil || notReady[0] != refs[0] {
		t.Fatalf("Wait gave %v %v for %v", ready, notReady, refs)
	}
}

// TestKeepAlive: the first call makes the Client ask the host its TTL; it
// then keeps the session alive on its own while idle.
func TestKeepAlive(t *testing.T) {
	f, c := newFake(t, 30)
	if _, err := c.Put(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	f.waitFor(t, "keepalives while idle", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.keepAlives >= 3 }, nil)
}

// TestClose: Close ends the session once; calls after it fail with
// ErrClosed, streams too, and send nothing.
func TestClose(t *testing.T) {
	f, c := newFake(t, 60_000)
	ctx := t.Context()
	if _, err := c.Put(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	ended, calls := slices.Clone(f.ended), len(f.sessions)
	f.mu.Unlock()
	if !slices.Equal(ended, []string{c.sess.id}) {
		t.Fatalf("ended %v, want %s once", ended, c.sess.id)
	}
	if _, err := c.Put(ctx, 2); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close: %v", err)
	}
	if _, err := c.SubmitBatch(ctx, []Call{{Module: "m", Function: "f"}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("SubmitBatch after Close: %v", err)
	}
	if _, err := c.GetStream(ctx, ObjectRef{ID: "x"}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("GetStream after Close: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.sessions) != calls {
		t.Fatalf("%d calls reached the host after Close", len(f.sessions)-calls)
	}
}

// TestCloseOfAnUnusedClient sends nothing: the host never heard of its
// session.
func TestCloseOfAnUnusedClient(t *testing.T) {
	f, c := newFake(t, 60_000)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.sessions) != 0 {
		t.Fatalf("an unused Client's Close made %d calls", len(f.sessions))
	}
}

// TestADroppedClientStops: a Client the program no longer reaches stops
// its goroutine without Close.
func TestADroppedClientStops(t *testing.T) {
	_, srv := newFakeServer(t, 60_000)
	c := New(srv.URL, WithHTTPClient(srv.Client()))
	if _, err := c.Put(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	sess := c.sess
	c = nil
	guard := time.After(hangGuard)
	for {
		gc()
		select {
		case <-sess.done:
			return
		case <-time.After(10 * time.Millisecond):
		case <-guard:
			t.Fatal("a dropped Client's session goroutine runs on")
		}
	}
}

// TestRefsHammer: goroutines make refs, release some, copy and drop the
// others, at once: every ref is released exactly once.
func TestRefsHammer(t *testing.T) {
	f, c := newFake(t, 60_000)
	const workers, each = 8, 100
	var mu sync.Mutex
	var made []string
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var mine []string
			for i := range each {
				r, err := c.Put(t.Context(), i)
				if err != nil {
					t.Error(err)
					return
				}
				mine = append(mine, r.ID)
				switch i % 3 {
				case 0:
					r.Release()
				case 1:
					cp := r
					go cp.Release()
					r.Release()
				}
			}
			mu.Lock()
			made = append(made, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	f.waitFor(t, "every ref to be released", func() bool { return len(f.released()) >= workers*each }, gc)
	got := f.released()
	slices.Sort(got)
	slices.Sort(made)
	if !slices.Equal(got, made) {
		t.Fatalf("released %d refs for %d made, or others", len(got), len(made))
	}
}
