package host_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/rayhost/rayhost/client"
	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/testutil"
	"github.com/rayhost/rayhost/store"
)

// Issue 16, item 2: the refs an API client makes are held by its session
// and freed when it lets go of them (its ObjectRefs unreachable, Release,
// Close), never by another principal.

const sessionHeader = "Rayhost-Session"

// waitCounts polls h's reference counts until cond holds, running
// runtime.GC meanwhile (the client's cleanups run behind it), failing at
// the hang guard.
func waitCounts(t *testing.T, h *host.Host, what string, cond func(objects, sessions int) bool) {
	t.Helper()
	deadline := time.Now().Add(testutil.HangGuard)
	for {
		objects, sessions, _ := host.RefCounts(h)
		if cond(objects, sessions) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited in vain for %s: %d objects counted, %d sessions", what, objects, sessions)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond) // poll
	}
}

// work submits and puts through c, reading each result, and drops every
// ref it made.
func work(t *testing.T, c *client.Client, mod string, n int) {
	t.Helper()
	ctx := ctxFor(t, testutil.HangGuard)
	for i := range n {
		put, err := c.Put(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		var sum int
		mustCall(t, c, mod, "add", &sum, put, 1)
		if sum != i+1 {
			t.Fatalf("add(put %d, 1) = %d", i, sum)
		}
	}
}

// TestClientFreesWhatItDrops: a Go client that drops its refs gets its
// objects freed, from the counter and the store, while its session lives
// on; refs it keeps stay.
func TestClientFreesWhatItDrops(t *testing.T) {
	st := store.NewMemory()
	h, c, mod := setup(t, func(cfg *host.Config) { cfg.Store = st })
	defer c.Close()
	base, baseStore := 0, st.Len()
	kept, err := c.Put(ctxFor(t, testutil.HangGuard), "kept")
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	work(t, c, mod, n)
	waitCounts(t, h, "the dropped refs to be freed", func(objects, sessions int) bool {
		return objects == base+1 && st.Len() == baseStore+1 && sessions == 1
	})
	var v string
	if err := c.Get(ctxFor(t, testutil.HangGuard), kept, &v); err != nil || v != "kept" {
		t.Fatalf("a ref still held reads %q, %v", v, err)
	}
}

// TestClientCloseFreesItsSession: Close releases everything the client
// holds; its refs then read as freed through another client.
func TestClientCloseFreesItsSession(t *testing.T) {
	st := store.NewMemory()
	h, other, mod := setup(t, func(cfg *host.Config) { cfg.Store = st })
	baseStore := st.Len()
	c := client.New(h.Addr())
	ctx := ctxFor(t, testutil.HangGuard)
	var refs []client.ObjectRef
	for i := range 10 {
		put, err := c.Put(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := c.Submit(ctx, mod, "add", put, 1)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, put, sum)
	}
	if _, err := c.GetValues(ctx, refs); err != nil {
		t.Fatal(err)
	}
	if objects, sessions, _ := host.RefCounts(h); objects < len(refs) || sessions != 2 {
		t.Fatalf("before Close: %d objects, %d sessions", objects, sessions)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitCounts(t, h, "the closed session's objects to be freed", func(objects, sessions int) bool {
		return objects == 0 && sessions == 1 && st.Len() == baseStore
	})
	if _, err := other.GetValues(ctx, refs[:1]); !errors.Is(err, client.ErrObjectFreed) {
		t.Fatalf("a closed session's ref reads: %v, want ErrObjectFreed", err)
	}
	if _, err := c.Put(ctx, 1); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Put after Close: %v", err)
	}
	stillServes(t, other, mod)
}

// recordSession is a transport that notes the session ID a client sends.
type recordSession struct {
	base http.RoundTripper
	mu   sync.Mutex
	id   string
}

func (r *recordSession) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.id = req.Header.Get(sessionHeader)
	r.mu.Unlock()
	return r.base.RoundTrip(req)
}

// from returns an HTTP client whose connections come from ip, a loopback
// address: another client, as the host tells them apart.
func from(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// withHeaders is a Connect interceptor that sets headers on each call.
type withHeaders map[string]string

func (w withHeaders) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		for k, v := range w {
			req.Header().Set(k, v)
		}
		return next(ctx, req)
	}
}

func (w withHeaders) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (w withHeaders) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// TestSessionAttack: a stranger cannot release or end another client's
// session. With the token but from another address, and the victim's
// session ID (leaked), its Release and EndSession act on a session of its
// own; from the victim's address without the ID, on its anonymous refs;
// with a wrong token, it is refused before anything. The victim's objects
// all stay.
func TestSessionAttack(t *testing.T) {
	const token = "s3cret-token"
	h := testutil.StartHost(t, func(cfg *host.Config) { cfg.Token = token })
	rec := &recordSession{base: client.NewHTTPClient(nil).Transport}
	victim := client.New(h.Addr(), client.WithToken(token), client.WithHTTPClient(&http.Client{Transport: rec}))
	defer victim.Close()
	mod := testutil.Register(t, victim, guestPkg)
	ctx := ctxFor(t, testutil.HangGuard)
	var refs []client.ObjectRef
	for i := range 5 {
		ref, err := victim.Put(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	rec.mu.Lock()
	leaked := rec.id
	rec.mu.Unlock()
	before, _, _ := host.RefCounts(h)
	var release rayhostv1.ReleaseRequest
	for _, r := range refs {
		release.Refs = append(release.Refs, &rayhostv1.ObjectRef{Id: r.ID, Owner: r.Owner})
	}

	attackers := map[string]rayhostv1connect.TaskServiceClient{
		"another address, the victim's session ID": rayhostv1connect.NewTaskServiceClient(from("127.0.0.2"), "http://"+h.Addr(),
			connect.WithInterceptors(withHeaders{"Authorization": "Bearer " + token, sessionHeader: leaked})),
		"another address, no session": rayhostv1connect.NewTaskServiceClient(from("127.0.0.2"), "http://"+h.Addr(),
			connect.WithInterceptors(withHeaders{"Authorization": "Bearer " + token})),
		"the victim's address, no session": rayhostv1connect.NewTaskServiceClient(http.DefaultClient, "http://"+h.Addr(),
			connect.WithInterceptors(withHeaders{"Authorization": "Bearer " + token})),
	}
	for name, a := range attackers {
		t.Run(name, func(t *testing.T) {
			if _, err := a.Release(ctx, connect.NewRequest(&release)); err != nil {
				t.Fatalf("Release: %v (releasing what one does not hold is no error)", err)
			}
			res, err := a.EndSession(ctx, connect.NewRequest(&rayhostv1.EndSessionRequest{}))
			switch {
			case strings.Contains(name, "session ID") && (err != nil || !res.Msg.GetEnded()):
				t.Fatalf("EndSession of its own session of that ID: %v %v", res, err)
			case !strings.Contains(name, "session ID") && connect.CodeOf(err) != connect.CodeInvalidArgument:
				t.Fatalf("EndSession without a session: %v", err)
			}
		})
	}
	t.Run("a wrong token", func(t *testing.T) {
		a := rayhostv1connect.NewTaskServiceClient(from("127.0.0.2"), "http://"+h.Addr(),
			connect.WithInterceptors(withHeaders{"Authorization": "Bearer wrong", sessionHeader: leaked}))
		if _, err := a.Release(ctx, connect.NewRequest(&release)); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("Release with a wrong token: %v", err)
		}
		if _, err := a.EndSession(ctx, connect.NewRequest(&rayhostv1.EndSessionRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("EndSession with a wrong token: %v", err)
		}
	})

	if after, _, _ := host.RefCounts(h); after != before {
		t.Fatalf("the attacks changed the objects counted: %d → %d", before, after)
	}
	vals, err := victim.GetValues(ctx, refs)
	if err != nil || len(vals) != len(refs) {
		t.Fatalf("the victim's refs after the attacks: %v", err)
	}
	stillServes(t, victim, mod)
}

// TestSessionFlood: a client inventing session IDs gets resource_exhausted
// past its cap, saying which; the host keeps serving it without a session
// and in the sessions it has, and other clients get sessions.
func TestSessionFlood(t *testing.T) {
	const perClient = 8
	h := testutil.StartHost(t, func(cfg *host.Config) { cfg.MaxSessions, cfg.MaxSessionsPerClient = 20, perClient })
	victim := client.New(h.Addr())
	defer victim.Close()
	mod := testutil.Register(t, victim, guestPkg) // its session: one of its address's
	ctx := ctxFor(t, testutil.HangGuard)
	var refused error
	made := 1
	for range 1000 {
		var id [16]byte
		_, _ = rand.Read(id[:])
		a := rayhostv1connect.NewTaskServiceClient(http.DefaultClient, "http://"+h.Addr(),
			connect.WithInterceptors(withHeaders{sessionHeader: hex.EncodeToString(id[:])}))
		_, err := a.Put(ctx, connect.NewRequest(&rayhostv1.PutRequest{Value: &rayhostv1.Value{Kind: &rayhostv1.Value_Json{Json: "1"}}}))
		if err != nil {
			refused = err
			break
		}
		made++
	}
	if connect.CodeOf(refused) != connect.CodeResourceExhausted || !strings.Contains(refused.Error(), "too many sessions") ||
		!strings.Contains(refused.Error(), "--max-sessions-per-client") {
		t.Fatalf("the flood's last call: %v", refused)
	}
	if made != perClient {
		t.Fatalf("the flood made %d sessions of its address, the cap is %d", made, perClient)
	}
	if _, sessions, _ := host.RefCounts(h); sessions != perClient {
		t.Fatalf("%d sessions after the flood", sessions)
	}
	// The victim's session works; so do calls without one.
	stillServes(t, victim, mod)
	anon := rayhostv1connect.NewTaskServiceClient(http.DefaultClient, "http://"+h.Addr())
	if _, err := anon.Health(ctx, connect.NewRequest(&rayhostv1.HealthRequest{})); err != nil {
		t.Fatalf("a call without a session after the flood: %v", err)
	}
	// Another client gets a session.
	other := client.New(h.Addr(), client.WithHTTPClient(from("127.0.0.2")))
	defer other.Close()
	stillServes(t, other, mod)
	if _, sessions, _ := host.RefCounts(h); sessions != perClient+1 {
		t.Fatalf("%d sessions, want the flood's and another client's", sessions)
	}
}

// TestAnonymousRelease: a call without a session (curl) makes refs its
// principal holds; Release without a session lets go of them.
func TestAnonymousRelease(t *testing.T) {
	h := testutil.StartHost(t, nil)
	ctx := ctxFor(t, testutil.HangGuard)
	anon := rayhostv1connect.NewTaskServiceClient(http.DefaultClient, "http://"+h.Addr(), connect.WithProtoJSON())
	res, err := anon.Put(ctx, connect.NewRequest(&rayhostv1.PutRequest{Value: &rayhostv1.Value{Kind: &rayhostv1.Value_Json{Json: "42"}}}))
	if err != nil {
		t.Fatal(err)
	}
	if objects, sessions, anonymous := host.RefCounts(h); objects != 1 || sessions != 0 || anonymous != 1 {
		t.Fatalf("after an anonymous Put: %d objects, %d sessions, %d anonymous holds", objects, sessions, anonymous)
	}
	if _, err := anon.Release(ctx, connect.NewRequest(&rayhostv1.ReleaseRequest{Refs: []*rayhostv1.ObjectRef{res.Msg.GetRef()}})); err != nil {
		t.Fatal(err)
	}
	if objects, _, _ := host.RefCounts(h); objects != 0 {
		t.Fatalf("%d objects counted after the release", objects)
	}
	_, err = anon.Get(ctx, connect.NewRequest(&rayhostv1.GetRequest{Refs: []*rayhostv1.ObjectRef{res.Msg.GetRef()}}))
	if err == nil || !strings.Contains(err.Error(), "freed") {
		t.Fatalf("a released object reads: %v", err)
	}
}
