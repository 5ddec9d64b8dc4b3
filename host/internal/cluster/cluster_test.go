package cluster

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/gossip"
	"github.com/rayhost/rayhost/host/internal/peerwire"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// hangGuard bounds a wait that should end at once: a hang fails the test
// instead of the run. It is no speed assertion.
const hangGuard = 30 * time.Second

// event is one call to Placement.
type event struct {
	kind          string // changed, loaded, unreachable
	name          string
	alive, proven bool
	first         bool
	avail         scheduler.Resources
}

// recorder is a Placement that records its calls.
type recorder struct {
	mu     sync.Mutex
	events []event
	more   chan struct{}
}

func newRecorder() *recorder { return &recorder{more: make(chan struct{}, 1)} }

func (r *recorder) add(e event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
}

func (r *recorder) MemberChanged(name string, alive, proven bool, total, avail scheduler.Resources) {
	r.add(event{kind: "changed", name: name, alive: alive, proven: proven, avail: avail})
}

func (r *recorder) Loaded(name string, total, avail scheduler.Resources, first bool) {
	r.add(event{kind: "loaded", name: name, first: first, avail: avail})
}

func (r *recorder) Unreachable(name string) { r.add(event{kind: "unreachable", name: name}) }

// await waits for an event that matches.
func (r *recorder) await(t *testing.T, what string, match func(event) bool) event {
	t.Helper()
	deadline := time.After(hangGuard)
	for {
		r.mu.Lock()
		for _, e := range r.events {
			if match(e) {
				r.mu.Unlock()
				return e
			}
		}
		r.mu.Unlock()
		select {
		case <-r.more:
		case <-deadline:
			t.Fatalf("no %s; events: %+v", what, r.events)
		}
	}
}

// awaitCount waits until n events match.
func (r *recorder) awaitCount(t *testing.T, what string, n int, match func(event) bool) {
	t.Helper()
	deadline := time.After(hangGuard)
	for {
		r.mu.Lock()
		got := 0
		for _, e := range r.events {
			if match(e) {
				got++
			}
		}
		r.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-r.more:
		case <-deadline:
			t.Fatalf("no %s; events: %+v", what, r.events)
		}
	}
}

// peerServer is another host's API as far as the cluster calls it: Health
// answers a load report with a proof and a peer protocol version.
type peerServer struct {
	rayhostv1connect.UnimplementedTaskServiceHandler
	rayhostv1connect.UnimplementedPeerServiceHandler
	addr    string
	proof   bool   // answer with the proof
	version string // answer with this version ("": this host's)
	refuse  bool   // refuse the credential
	cpus    float64

	mu    sync.Mutex
	calls []http.Header
}

func (s *peerServer) Health(ctx context.Context, req *connect.Request[rayhostv1.HealthRequest]) (*connect.Response[rayhostv1.HealthResponse], error) {
	s.mu.Lock()
	s.calls = append(s.calls, req.Header().Clone())
	s.mu.Unlock()
	if s.refuse || req.Header().Get("Test-Credential") != "for "+s.addr {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("no"))
	}
	res := connect.NewResponse(&rayhostv1.HealthResponse{Available: &rayhostv1.Resources{NumCpus: &s.cpus}})
	if s.proof {
		res.Header().Set("Test-Proof", "proof of "+s.addr)
	}
	return res, nil
}

// versionOverride answers with another peer protocol version.
type versionOverride struct{ v string }

func (o versionOverride) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		if res != nil && o.v != "" {
			res.Header().Set(peerwire.VersionHeader, o.v)
		}
		return res, err
	}
}

func (o versionOverride) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (o versionOverride) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func startPeer(t *testing.T, s *peerServer) *peerServer {
	t.Helper()
	mux := http.NewServeMux()
	// The override wraps the version interceptor: it sees the answer last.
	opts := connect.WithInterceptors(versionOverride{s.version}, peerwire.ServerInterceptor())
	mux.Handle(rayhostv1connect.NewTaskServiceHandler(s, opts))
	mux.Handle(rayhostv1connect.NewPeerServiceHandler(s, opts))
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	s.addr = strings.TrimPrefix(srv.URL, "http://")
	return s
}

// member starts a gossip member on n.
func member(t *testing.T, n *gossip.MemoryNetwork, name, api string) *gossip.Memory {
	t.Helper()
	m, err := n.Member(gossip.Config{NodeName: name, BindAddr: "127.0.0.1:0", APIAddr: api,
		Resources: map[string]float64{"CPU": 4}, Timings: gossip.FastTimings()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func testConfig(m gossip.Membership, p Placement) Config {
	return Config{ID: m.Local().Name, Addr: m.Local().APIAddr, Membership: m, Placement: p,
		Credential: func(addr string) http.Header { return http.Header{"Test-Credential": {"for " + addr}} },
		Proven:     func(addr string, h http.Header) bool { return h.Get("Test-Proof") == "proof of "+addr },
		// The test waits on events, not on reports: a long interval keeps
		// the reports to the probe a member's arrival starts.
		LoadInterval: time.Hour, MemberGrace: 500 * time.Millisecond}
}

// startSelf starts this host's cluster view on n.
func startSelf(t *testing.T, n *gossip.MemoryNetwork, edit func(*Config)) (*Cluster, *gossip.Memory, *recorder) {
	t.Helper()
	m := member(t, n, "self", "127.0.0.1:1")
	rec := newRecorder()
	cfg := testConfig(m, rec)
	if edit != nil {
		edit(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(t.Context(), nil, time.Second); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, m, rec
}

func join(t *testing.T, m *gossip.Memory, to gossip.Membership) {
	t.Helper()
	if _, err := m.Join(t.Context(), []string{to.Local().GossipAddr}); err != nil {
		t.Fatal(err)
	}
}

func cpus(n float64) scheduler.Resources {
	r, _ := scheduler.Make(n, 0, nil)
	return r
}

// TestMemberProvenThenPlaced: a member gossip lists is placed on only once
// its load report proves it holds the cluster key, in this peer protocol
// version; then it is reachable, by address and by name.
func TestMemberProvenThenPlaced(t *testing.T) {
	n := gossip.NewMemoryNetwork()
	c, self, rec := startSelf(t, n, nil)
	ps := startPeer(t, &peerServer{proof: true, cpus: 3})
	if _, err := c.Reach(ps.addr); !errors.Is(err, ErrNotMember) {
		t.Fatalf("reach before it joined: %v", err)
	}
	join(t, member(t, n, "b", ps.addr), self)

	ch := rec.await(t, "change", func(e event) bool { return e.kind == "changed" && e.name == "b" })
	if !ch.alive || ch.proven {
		t.Fatalf("first change: %+v (a member is not proven before it answers)", ch)
	}
	ld := rec.await(t, "load", func(e event) bool { return e.kind == "loaded" && e.name == "b" })
	if !ld.first || ld.avail.CPU != cpus(3).CPU {
		t.Fatalf("load: %+v", ld)
	}
	pc, err := c.Reach(ps.addr)
	if err != nil || pc.Name != "b" || pc.Ctx.Err() != nil {
		t.Fatalf("reach: %+v, %v", pc, err)
	}
	if _, ok := c.Named("b"); !ok || c.NodeName(ps.addr) != "b" || !c.HostAlive(ps.addr) || c.PeerDown(ps.addr) || len(c.Alive()) != 1 {
		t.Fatal("a proven member is not seen as one")
	}
	if c.NodeName("127.0.0.1:1") != "self" || !c.HostAlive("127.0.0.1:1") || c.PeerDown("127.0.0.1:1") {
		t.Fatal("this host's own address")
	}
	ms := c.Members()
	if len(ms) != 1 || ms[0].State != "alive" || ms[0].Available == nil || ms[0].Available.CPU != cpus(3).CPU || ms[0].Total.CPU != cpus(4).CPU {
		t.Fatalf("members: %+v", ms)
	}
	// The report carried the credential for that address and the version.
	ps.mu.Lock()
	h := ps.calls[0]
	ps.mu.Unlock()
	if h.Get("Test-Credential") != "for "+ps.addr || h.Get(peerwire.VersionHeader) != strconv.Itoa(peerwire.Version) {
		t.Fatalf("headers of the load report: %v", h)
	}
}

// TestMemberWithoutProofGetsNothing: a member that answers without the
// proof (a stranger on the member list), or refuses the credential, is
// never reachable and is taken out of placement.
func TestMemberWithoutProofGetsNothing(t *testing.T) {
	for name, s := range map[string]*peerServer{"no proof": {cpus: 1}, "refuses": {proof: true, refuse: true, cpus: 1}} {
		t.Run(name, func(t *testing.T) {
			n := gossip.NewMemoryNetwork()
			c, self, rec := startSelf(t, n, nil)
			ps := startPeer(t, s)
			join(t, member(t, n, "rogue", ps.addr), self)
			rec.await(t, "unreachable", func(e event) bool { return e.kind == "unreachable" && e.name == "rogue" })
			if _, err := c.Reach(ps.addr); !errors.Is(err, ErrNotMember) {
				t.Fatalf("reach: %v", err)
			}
			if c.NodeName(ps.addr) != "" || c.HostAlive(ps.addr) || !c.PeerDown(ps.addr) || len(c.Alive()) != 0 {
				t.Fatal("an unproven member is treated as a member")
			}
			if _, ok := c.Named("rogue"); ok {
				t.Fatal("named")
			}
			if ms := c.Members(); len(ms) != 1 || ms[0].State != "unverified" {
				t.Fatalf("members: %+v", ms)
			}
		})
	}
}

// TestMemberOfAnotherVersionRefused: a member that proves it holds the key
// but speaks another peer protocol version is not placed on nor called; a
// member of this version in the same cluster is.
func TestMemberOfAnotherVersionRefused(t *testing.T) {
	n := gossip.NewMemoryNetwork()
	c, self, rec := startSelf(t, n, nil)
	old := startPeer(t, &peerServer{proof: true, version: strconv.Itoa(peerwire.Version + 1), cpus: 1})
	cur := startPeer(t, &peerServer{proof: true, cpus: 2})
	join(t, member(t, n, "old", old.addr), self)
	join(t, member(t, n, "cur", cur.addr), self)
	rec.await(t, "unreachable", func(e event) bool { return e.kind == "unreachable" && e.name == "old" })
	rec.await(t, "load", func(e event) bool { return e.kind == "loaded" && e.name == "cur" })
	if _, err := c.Reach(old.addr); !errors.Is(err, ErrNotMember) {
		t.Fatalf("reach a member of another version: %v", err)
	}
	if _, err := c.Reach(cur.addr); err != nil {
		t.Fatalf("reach a member of this version: %v", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, e := range rec.events {
		if e.name == "old" && (e.kind == "loaded" || e.proven) {
			t.Fatalf("a member of another version was placed on: %+v", e)
		}
	}
}

// TestMemberFails: when gossip says a member failed, calls to it end, it
// is down, and placement hears it is gone.
func TestMemberFails(t *testing.T) {
	n := gossip.NewMemoryNetwork()
	c, self, rec := startSelf(t, n, nil)
	ps := startPeer(t, &peerServer{proof: true, cpus: 1})
	join(t, member(t, n, "b", ps.addr), self)
	rec.await(t, "load", func(e event) bool { return e.kind == "loaded" && e.name == "b" })
	pc, err := c.Reach(ps.addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Fail("b"); err != nil {
		t.Fatal(err)
	}
	rec.await(t, "gone", func(e event) bool { return e.kind == "changed" && e.name == "b" && !e.alive })
	select {
	case <-pc.Ctx.Done():
	case <-time.After(hangGuard):
		t.Fatal("calls to a failed member go on")
	}
	if _, err := c.Reach(ps.addr); !errors.Is(err, ErrMemberDown) {
		t.Fatalf("reach a failed member: %v", err)
	}
	if !c.PeerDown(ps.addr) || c.HostAlive(ps.addr) || len(c.Alive()) != 0 {
		t.Fatal("a failed member is not down")
	}
	if ms := c.Members(); len(ms) != 1 || ms[0].State != "failed" || ms[0].Available != nil {
		t.Fatalf("members: %+v", ms)
	}
	// It comes back: proven again before it is placed on.
	if err := n.Heal("b"); err != nil {
		t.Fatal(err)
	}
	rec.awaitCount(t, "proof after the heal", 2, func(e event) bool { return e.kind == "loaded" && e.name == "b" && e.first })
	if pc2, err := c.Reach(ps.addr); err != nil || pc2.Ctx.Err() != nil {
		t.Fatalf("reach after the heal: %v", err)
	}
}

// TestUnkeyedIgnoresRemoteAddresses: without a gossip key, a member that
// advertises an API beyond loopback is never called.
func TestUnkeyedIgnoresRemoteAddresses(t *testing.T) {
	n := gossip.NewMemoryNetwork()
	c, self, rec := startSelf(t, n, nil)
	join(t, member(t, n, "far", "192.0.2.1:80"), self)
	ps := startPeer(t, &peerServer{proof: true, cpus: 1})
	join(t, member(t, n, "near", ps.addr), self)
	rec.await(t, "load", func(e event) bool { return e.kind == "loaded" && e.name == "near" })
	if _, err := c.Reach("192.0.2.1:80"); !errors.Is(err, ErrNotMember) {
		t.Fatalf("reach: %v", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, e := range rec.events {
		if e.name == "far" {
			t.Fatalf("placement heard of it: %+v", e)
		}
	}
}

// TestAwaitMember: an address a peer names may appear in gossip a moment
// later; an address that never does is no member.
func TestAwaitMember(t *testing.T) {
	n := gossip.NewMemoryNetwork()
	c, self, _ := startSelf(t, n, func(cfg *Config) { cfg.MemberGrace = hangGuard })
	ps := startPeer(t, &peerServer{proof: true, cpus: 1})
	got := make(chan error, 1)
	go func() {
		_, err := c.AwaitMember(t.Context(), ps.addr)
		got <- err
	}()
	join(t, member(t, n, "late", ps.addr), self)
	if err := <-got; err != nil {
		t.Fatalf("await: %v", err)
	}

	c2, _, _ := startSelf(t, gossip.NewMemoryNetwork(), func(cfg *Config) { cfg.MemberGrace = time.Millisecond })
	if _, err := c2.AwaitMember(t.Context(), "127.0.0.1:9"); !errors.Is(err, ErrNotMember) {
		t.Fatalf("await an address nobody has: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	c3, _, _ := startSelf(t, gossip.NewMemoryNetwork(), func(cfg *Config) { cfg.MemberGrace = hangGuard })
	if _, err := c3.AwaitMember(ctx, "127.0.0.1:9"); !errors.Is(err, context.Canceled) {
		t.Fatalf("await with an ended context: %v", err)
	}
}

// TestPeersFileRejoin: the members seen alive are recorded, and a view
// started without seeds on the same file rejoins them.
func TestPeersFileRejoin(t *testing.T) {
	n := gossip.NewMemoryNetwork()
	file := filepath.Join(t.TempDir(), "cluster-peers")
	_, self, rec := startSelf(t, n, func(cfg *Config) { cfg.PeersFile = file })
	ps := startPeer(t, &peerServer{proof: true, cpus: 1})
	b := member(t, n, "b", ps.addr)
	join(t, b, self)
	rec.await(t, "load", func(e event) bool { return e.kind == "loaded" && e.name == "b" })
	data, err := os.ReadFile(file)
	if err != nil || strings.TrimSpace(string(data)) != b.Local().GossipAddr {
		t.Fatalf("peers file: %q, %v", data, err)
	}

	// A restarted host: a new member with the file and no seeds.
	m := member(t, n, "restarted", "127.0.0.1:2")
	rec2 := newRecorder()
	cfg := testConfig(m, rec2)
	cfg.PeersFile = file
	c2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c2.Close() })
	if err := c2.Start(t.Context(), nil, hangGuard); err != nil {
		t.Fatal(err)
	}
	rec2.await(t, "rejoined member", func(e event) bool { return e.kind == "loaded" && e.name == "b" })
}

// TestJoinSeedsFails: seeds nobody answers at make Start fail.
func TestJoinSeedsFails(t *testing.T) {
	n := gossip.NewMemoryNetwork()
	m := member(t, n, "self", "127.0.0.1:1")
	c, err := New(testConfig(m, newRecorder()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(t.Context(), []string{"127.0.0.1:9"}, 10*time.Millisecond); !errors.Is(err, gossip.ErrJoin) {
		t.Fatalf("start: %v", err)
	}
}

// TestCloseEndsCalls: Close ends every call to a member and stops the
// view; closing twice is fine.
func TestCloseEndsCalls(t *testing.T) {
	n := gossip.NewMemoryNetwork()
	c, self, rec := startSelf(t, n, nil)
	ps := startPeer(t, &peerServer{proof: true, cpus: 1})
	join(t, member(t, n, "b", ps.addr), self)
	rec.await(t, "load", func(e event) bool { return e.kind == "loaded" && e.name == "b" })
	pc, err := c.Reach(ps.addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Leave(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if pc.Ctx.Err() == nil {
		t.Fatal("a call to a member outlives Close")
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

// TestNilCluster: a host in no cluster has no members.
func TestNilCluster(t *testing.T) {
	var c *Cluster
	if _, err := c.Reach("127.0.0.1:1"); !errors.Is(err, ErrNotMember) {
		t.Fatal(err)
	}
	if _, err := c.AwaitMember(t.Context(), "127.0.0.1:1"); !errors.Is(err, ErrNotMember) {
		t.Fatal(err)
	}
	if _, ok := c.Named("x"); ok || c.HostAlive("a:1") || c.PeerDown("a:1") || c.NodeName("a:1") != "" || c.Alive() != nil || c.Members() != nil {
		t.Fatal("a nil cluster has members")
	}
}

func TestConfigValidation(t *testing.T) {
	m := member(t, gossip.NewMemoryNetwork(), "self", "127.0.0.1:1")
	good := testConfig(m, newRecorder())
	for name, edit := range map[string]func(*Config){
		"no id":         func(c *Config) { c.ID = "" },
		"no membership": func(c *Config) { c.Membership = nil },
		"no placement":  func(c *Config) { c.Placement = nil },
		"no credential": func(c *Config) { c.Credential = nil },
		"no proof":      func(c *Config) { c.Proven = nil },
		"negative":      func(c *Config) { c.LoadInterval = -1 },
	} {
		cfg := good
		edit(&cfg)
		if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	cfg := good
	cfg.LoadInterval, cfg.MemberGrace = 0, 0
	c, err := New(cfg)
	if err != nil || c.cfg.LoadInterval <= 0 || c.cfg.MemberGrace <= 0 || c.cfg.LoadTimeout <= 0 || c.log == nil {
		t.Fatalf("defaults: %+v, %v", c.cfg, err)
	}
}
