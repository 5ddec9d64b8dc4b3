package edge

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/host/internal/guard"
	"github.com/rayhost/rayhost/host/internal/sessions"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/kinds"
)

// testPrincipal is the header the test server takes the caller's principal
// from (a guard stands there in a host).
const testPrincipal = "Test-Principal"

// principals sets the principal the test says on each call, as the guard
// does.
func principals(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.Header.Get(testPrincipal); p != "" {
			r = r.WithContext(guard.WithPrincipal(r.Context(), p))
		}
		next.ServeHTTP(w, r)
	})
}

var errTooManySessions = kinds.Classed(kinds.ErrResourceExhausted, "fake: too many sessions")

// fakeSessions is the fake host's sessions: a holder per principal and
// session, at most max of them, and what the edge asked of them.
type fakeSessions struct {
	smu      sync.Mutex
	live     map[string]string // principal/session → holder
	max      int
	inFlight int
	begun    []Caller
	released map[string][]ids.ObjectID // by holder
	ended    []string                  // holders
	holders  map[ids.ObjectID]string   // who holds what Submit and Put made
	read     map[string][]ids.ObjectID // the nested refs each holder read
}

func newFakeSessions() fakeSessions {
	return fakeSessions{live: map[string]string{}, max: 2, released: map[string][]ids.ObjectID{}, holders: map[ids.ObjectID]string{},
		read: map[string][]ids.ObjectID{}}
}

func (f *fakeSessions) BeginCall(c Caller) (Caller, func(), error) {
	f.smu.Lock()
	defer f.smu.Unlock()
	f.begun = append(f.begun, c)
	if !c.InSession() {
		c.Holder = "anon:" + c.Principal
		return c, func() {}, nil
	}
	key := c.Principal + "/" + c.Session.String()
	h, ok := f.live[key]
	if !ok {
		if len(f.live) >= f.max {
			return c, nil, fmt.Errorf("%w: %d", errTooManySessions, f.max)
		}
		h = fmt.Sprintf("session:%d", len(f.live)+len(f.ended))
		f.live[key] = h
	}
	c.Holder = h
	f.inFlight++
	var once sync.Once
	return c, func() {
		once.Do(func() {
			f.smu.Lock()
			f.inFlight--
			f.smu.Unlock()
		})
	}, nil
}

func (f *fakeSessions) Read(c Caller, vals []abi.Value) {
	f.smu.Lock()
	defer f.smu.Unlock()
	for _, v := range vals {
		for _, r := range abi.NestedRefs(v) {
			f.read[c.Holder] = append(f.read[c.Holder], r.ID)
		}
	}
}

func (f *fakeSessions) Release(c Caller, refs []ids.ObjectID) {
	f.smu.Lock()
	defer f.smu.Unlock()
	f.released[c.Holder] = append(f.released[c.Holder], refs...)
}

func (f *fakeSessions) EndSession(c Caller) bool {
	f.smu.Lock()
	defer f.smu.Unlock()
	key := c.Principal + "/" + c.Session.String()
	h, ok := f.live[key]
	if ok {
		delete(f.live, key)
		f.ended = append(f.ended, h)
	}
	return ok
}

// clientAs returns a client of the edge serve started for f that says
// the caller is principal and sends session id (none if "").
func clientAs(t *testing.T, f *fakeHost, principal, id string) rayhostv1connect.TaskServiceClient {
	t.Helper()
	set := func(h http.Header) {
		h.Set(testPrincipal, principal)
		if id != "" {
			h.Set(sessions.Header, id)
		}
	}
	return rayhostv1connect.NewTaskServiceClient(f.srv.Client(), f.srv.URL, connect.WithInterceptors(headerInterceptor(set)))
}

type headerInterceptor func(http.Header)

func (f headerInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		f(req.Header())
		return next(ctx, req)
	}
}

func (f headerInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		f(conn.RequestHeader())
		return conn
	}
}

func (f headerInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

const (
	sessA = "0123456789abcdef0123456789abcdef"
	sessB = "fedcba9876543210fedcba9876543210"
)

// TestSessionHolds: the refs a call in a session makes are held by that
// session's holder, whatever the call (Put, Submit, a SubmitStream);
// without a session by the principal's anonymous holder; the same ID from
// another principal is another session; Release lets go of the caller's.
func TestSessionHolds(t *testing.T) {
	f := newFakeHost()
	serve(t, f, nil)
	ctx := ctxFor(t)
	cl := func(principal, id string) rayhostv1connect.TaskServiceClient {
		return clientAs(t, f, principal, id)
	}
	put := func(c rayhostv1connect.TaskServiceClient) ids.ObjectID {
		t.Helper()
		res, err := c.Put(ctx, connect.NewRequest(&rayhostv1.PutRequest{Value: &rayhostv1.Value{Kind: &rayhostv1.Value_Json{Json: "1"}}}))
		if err != nil {
			t.Fatal(err)
		}
		id, _ := ids.ParseObjectID(res.Msg.GetRef().GetId())
		return id
	}
	alice, mallory, anon := cl("client@10.0.0.1", sessA), cl("client@10.0.0.66", sessA), cl("client@10.0.0.1", "")
	a1, m1, n1 := put(alice), put(mallory), put(anon)
	sub, err := alice.Submit(ctx, connect.NewRequest(&rayhostv1.SubmitRequest{Module: "lib", Function: "add"}))
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := ids.ParseObjectID(sub.Msg.GetRefs()[0].GetId())
	stream := alice.SubmitStream(ctx)
	if err := stream.Send(&rayhostv1.SubmitRequest{Module: "lib", Function: "add"}); err != nil {
		t.Fatal(err)
	}
	res, err := stream.Receive()
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.CloseRequest()
	_ = stream.CloseResponse()
	a3, _ := ids.ParseObjectID(res.GetRefs()[0].GetId())

	f.smu.Lock()
	ha, hm := f.live["client@10.0.0.1/"+sessA], f.live["client@10.0.0.66/"+sessA]
	holders := []string{f.holders[a1], f.holders[a2], f.holders[a3], f.holders[m1], f.holders[n1]}
	f.smu.Unlock()
	if ha == "" || hm == "" || ha == hm {
		t.Fatalf("one ID from two principals: holders %q and %q", ha, hm)
	}
	if want := []string{ha, ha, ha, hm, "anon:client@10.0.0.1"}; !slices.Equal(holders, want) {
		t.Fatalf("holders %v, want %v", holders, want)
	}

	// Mallory releases Alice's refs, with Alice's session ID: her own
	// holder lets go of them, which it does not hold.
	if _, err := mallory.Release(ctx, connect.NewRequest(&rayhostv1.ReleaseRequest{Refs: []*rayhostv1.ObjectRef{{Id: a1.String()}}})); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Release(ctx, connect.NewRequest(&rayhostv1.ReleaseRequest{Refs: []*rayhostv1.ObjectRef{{Id: a2.String()}, {Id: a3.String()}}})); err != nil {
		t.Fatal(err)
	}
	f.smu.Lock()
	defer f.smu.Unlock()
	if got := f.released[hm]; !slices.Equal(got, []ids.ObjectID{a1}) {
		t.Fatalf("mallory's release went to %v", f.released)
	}
	if got := f.released[ha]; !slices.Equal(got, []ids.ObjectID{a2, a3}) {
		t.Fatalf("alice's release: %v", f.released)
	}
	if f.inFlight != 0 {
		t.Fatalf("%d calls never ended", f.inFlight)
	}
}

// TestSessionHeaderChecked: a malformed session ID fails the call with
// invalid_argument, saying what is wanted, before the host sees it.
func TestSessionHeaderChecked(t *testing.T) {
	f := newFakeHost()
	serve(t, f, nil)
	ctx := ctxFor(t)
	for name, id := range map[string]string{
		"short":     "abc",
		"not hex":   strings.Repeat("g", 32),
		"all zeros": strings.Repeat("0", 32),
		"huge":      strings.Repeat("a", 8<<10),
	} {
		t.Run(name, func(t *testing.T) {
			c := clientAs(t, f, "client@10.0.0.1", id)
			_, err := c.Health(ctx, connect.NewRequest(&rayhostv1.HealthRequest{}))
			if codeOfCall(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "Rayhost-Session") ||
				(name != "all zeros" && !strings.Contains(err.Error(), "32 hex digits")) {
				t.Fatalf("%v", err)
			}
			if len(err.Error()) > 300 {
				t.Fatalf("the error repeats the header: %d bytes", len(err.Error()))
			}
			stream, err := c.GetStream(ctx, connect.NewRequest(&rayhostv1.GetStreamRequest{Ref: &rayhostv1.ObjectRef{Id: ids.NewTaskID().Return(0).String()}}))
			if err == nil {
				for stream.Receive() {
				}
				err = stream.Err()
			}
			if codeOfCall(err) != connect.CodeInvalidArgument {
				t.Fatalf("a stream: %v", err)
			}
		})
	}
	f.smu.Lock()
	defer f.smu.Unlock()
	if len(f.begun) != 0 {
		t.Fatalf("the host saw %d calls with a bad session", len(f.begun))
	}
}

func TestKeepAliveAndEndSession(t *testing.T) {
	f := newFakeHost()
	serve(t, f, nil)
	ctx := ctxFor(t)
	anon := clientAs(t, f, "client@10.0.0.1", "")
	if _, err := anon.KeepAlive(ctx, connect.NewRequest(&rayhostv1.KeepAliveRequest{})); codeOfCall(err) != connect.CodeInvalidArgument {
		t.Fatalf("KeepAlive without a session: %v", err)
	}
	if _, err := anon.EndSession(ctx, connect.NewRequest(&rayhostv1.EndSessionRequest{})); codeOfCall(err) != connect.CodeInvalidArgument {
		t.Fatalf("EndSession without a session: %v", err)
	}
	c := clientAs(t, f, "client@10.0.0.1", sessA)
	res, err := c.KeepAlive(ctx, connect.NewRequest(&rayhostv1.KeepAliveRequest{}))
	if err != nil || res.Msg.GetTtlMs() != 60_000 {
		t.Fatalf("KeepAlive: %v %v", res, err)
	}
	// Another principal cannot end it.
	other := clientAs(t, f, "client@10.0.0.66", sessA)
	if res, err := other.EndSession(ctx, connect.NewRequest(&rayhostv1.EndSessionRequest{})); err != nil || res.Msg.GetEnded() {
		t.Fatalf("another principal's EndSession: %v %v", res, err)
	}
	if res, err := c.EndSession(ctx, connect.NewRequest(&rayhostv1.EndSessionRequest{})); err != nil || !res.Msg.GetEnded() {
		t.Fatalf("EndSession: %v %v", res, err)
	}
	// EndSession makes no session: a second one finds none.
	if res, err := c.EndSession(ctx, connect.NewRequest(&rayhostv1.EndSessionRequest{})); err != nil || res.Msg.GetEnded() {
		t.Fatalf("EndSession again: %v %v", res, err)
	}
	f.smu.Lock()
	defer f.smu.Unlock()
	if len(f.live) != 0 || len(f.ended) != 1 {
		t.Fatalf("live %v, ended %v", f.live, f.ended)
	}
}

// TestSessionCapRefusesClearly: past the host's cap a new session is
// refused with resource_exhausted; the sessions there and calls without
// one go on.
func TestSessionCapRefusesClearly(t *testing.T) {
	f := newFakeHost()
	serve(t, f, nil)
	ctx := ctxFor(t)
	health := func(c rayhostv1connect.TaskServiceClient) error {
		_, err := c.Health(ctx, connect.NewRequest(&rayhostv1.HealthRequest{}))
		return err
	}
	for i := range 2 {
		if err := health(clientAs(t, f, "client@10.0.0.1", fmt.Sprintf("%032x", i+1))); err != nil {
			t.Fatal(err)
		}
	}
	err := health(clientAs(t, f, "client@10.0.0.1", fmt.Sprintf("%032x", 3)))
	if codeOfCall(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "too many sessions") {
		t.Fatalf("a session past the cap: %v", err)
	}
	if err := health(clientAs(t, f, "client@10.0.0.1", fmt.Sprintf("%032x", 1))); err != nil {
		t.Fatalf("a session there: %v", err)
	}
	if err := health(clientAs(t, f, "client@10.0.0.1", "")); err != nil {
		t.Fatalf("no session: %v", err)
	}
}

// TestReadsHoldNestedRefs: the refs inside the values a caller reads (Get,
// GetStream of a value in memory) are the caller's to hold.
func TestReadsHoldNestedRefs(t *testing.T) {
	f := newFakeHost()
	serve(t, f, nil)
	ctx := ctxFor(t)
	inner := ids.NewTaskID().Put(0)
	outer := ids.NewTaskID().Return(0)
	f.set(outer, abi.Value{Codec: abi.CodecJSON, Data: []byte(`[{"object_id":"` + inner.String() + `","owner":"fake:1"}]`)})
	f.mu.Lock()
	f.inMemory = map[ids.ObjectID]bool{outer: true}
	f.mu.Unlock()
	c := clientAs(t, f, "client@10.0.0.1", sessA)
	if _, err := c.Get(ctx, connect.NewRequest(&rayhostv1.GetRequest{Refs: []*rayhostv1.ObjectRef{{Id: outer.String()}}})); err != nil {
		t.Fatal(err)
	}
	stream, err := c.GetStream(ctx, connect.NewRequest(&rayhostv1.GetStreamRequest{Ref: &rayhostv1.ObjectRef{Id: outer.String()}}))
	if err != nil {
		t.Fatal(err)
	}
	for stream.Receive() {
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	f.smu.Lock()
	defer f.smu.Unlock()
	h := f.live["client@10.0.0.1/"+sessA]
	if got := f.read[h]; !slices.Equal(got, []ids.ObjectID{inner, inner}) {
		t.Fatalf("the session read %v, want the nested ref twice", f.read)
	}
}
