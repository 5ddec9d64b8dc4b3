package host_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/rayhost/rayhost/client"
	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/gossip"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/testutil"
)

// Attacks on cluster trust: a stranger that reaches the gossip port, with
// or without the gossip key, advertises an API address it controls and
// records every request the honest hosts send there.

const trustToken = "users-s3cret"

// trustCluster starts n hosts on loopback with the gossip key (nil: none)
// and the users' API token, and waits until each sees all n alive.
func trustCluster(t *testing.T, n int, key []byte) []*host.Host {
	t.Helper()
	var hosts []*host.Host
	for i := range n {
		cfg := testutil.HostConfig(t)
		cfg.ID = fmt.Sprintf("h%d-%s", i, cfg.ID)
		cfg.Token = trustToken
		cc := host.DefaultClusterConfig()
		cc.Gossip.BindAddr = "127.0.0.1:0"
		cc.Gossip.Timings = gossip.FastTimings()
		cc.Gossip.EncryptKey = key
		cc.LoadInterval = 50 * time.Millisecond
		cc.JoinTimeout = 10 * time.Second
		if i > 0 {
			cc.Seeds = []string{hosts[0].GossipAddr()}
		}
		cfg.Cluster = cc
		h, err := host.New(cfg)
		if err != nil {
			t.Fatalf("starting host %d: %v", i, err)
		}
		t.Cleanup(func() { _ = h.Close() })
		hosts = append(hosts, h)
	}
	for _, h := range hosts {
		testutil.WaitMembers(t, client.New(h.Addr(), client.WithToken(trustToken)), n)
	}
	return hosts
}

// rogueAPI is the API a rogue member advertises: it answers Health with
// plenty of free CPUs (to attract work), and records every request.
type rogueAPI struct {
	rayhostv1connect.UnimplementedTaskServiceHandler
	rayhostv1connect.UnimplementedPeerServiceHandler
	addr string

	mu   sync.Mutex
	reqs []recorded
	got  chan struct{} // a request arrived
}

type recorded struct {
	path   string
	header http.Header
}

func (r *rogueAPI) Health(context.Context, *connect.Request[rayhostv1.HealthRequest]) (*connect.Response[rayhostv1.HealthResponse], error) {
	return connect.NewResponse(&rayhostv1.HealthResponse{Available: &rayhostv1.Resources{NumCpus: proto.Float64(64)}}), nil
}

func (r *rogueAPI) requests() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.reqs...)
}

func startRogueAPI(t *testing.T) *rogueAPI {
	t.Helper()
	r := &rogueAPI{got: make(chan struct{}, 1)}
	mux := http.NewServeMux()
	mux.Handle(rayhostv1connect.NewTaskServiceHandler(r))
	mux.Handle(rayhostv1connect.NewPeerServiceHandler(r))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: protocols, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.reqs = append(r.reqs, recorded{path: req.URL.Path, header: req.Header.Clone()})
		r.mu.Unlock()
		select {
		case r.got <- struct{}{}:
		default:
		}
		mux.ServeHTTP(w, req)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r
}

// rogueMember joins the cluster at seed through gossip alone (no rayhost
// host behind it), with key, advertising api and 64 CPUs.
func rogueMember(t *testing.T, api, seed string, key []byte) (*gossip.Serf, error) {
	t.Helper()
	m, err := gossip.New(gossip.Config{NodeName: "rogue", BindAddr: "127.0.0.1:0", APIAddr: api,
		Resources: map[string]float64{"CPU": 64}, EncryptKey: key, Timings: gossip.FastTimings()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err = m.Join(ctx, []string{seed})
	return m, err
}

// peerCall calls the PeerService's Locate at addr with headers, as a
// stranger would, and returns the Connect code.
func peerCall(t *testing.T, addr string, headers map[string]string) connect.Code {
	t.Helper()
	pc := rayhostv1connect.NewPeerServiceClient(client.NewHTTPClient(nil), "http://"+addr)
	req := connect.NewRequest(&rayhostv1.LocateRequest{Id: strings.Repeat("ab", 20)})
	for k, v := range headers {
		req.Header().Set(k, v)
	}
	_, err := pc.Locate(ctxFor(t, hangGuard), req)
	return connect.CodeOf(err)
}

// runAcross runs work tasks on the cluster through c and returns the
// hosts they ran on.
func runAcross(t *testing.T, c *client.Client, mod string) map[string]int {
	t.Helper()
	calls := make([]client.Call, 40)
	for i := range calls {
		calls[i] = client.Call{Module: mod, Function: "work", Args: []any{50}}
	}
	ctx := ctxFor(t, hangGuard)
	refs, err := c.SubmitBatch(ctx, calls)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		var v int
		if err := c.Get(ctx, r[0], &v); err != nil || v != 100 {
			t.Fatalf("work = %d, %v", v, err)
		}
	}
	seen := map[string]int{}
	for _, r := range refs {
		for _, h := range hostsOf(t, c)[r[0].ID[:32]] {
			seen[h]++
		}
	}
	return seen
}

// noToken fails if any recorded request carries the users' token.
func noToken(t *testing.T, reqs []recorded) {
	t.Helper()
	for _, r := range reqs {
		for k, vs := range r.header {
			for _, v := range vs {
				if strings.Contains(v, trustToken) {
					t.Fatalf("the rogue got the users' token in %s: %s", k, r.path)
				}
			}
		}
	}
}

// TestClusterRogueWithoutKey: a stranger without the gossip key cannot
// join, and its advertised API gets no request at all.
func TestClusterRogueWithoutKey(t *testing.T) {
	key, _ := gossip.ParseKey(gossip.GenerateKey())
	hosts := trustCluster(t, 2, key)
	c := client.New(hosts[0].Addr(), client.WithToken(trustToken))
	mod := testutil.Register(t, c, guestPkg)
	rogue := startRogueAPI(t)
	wrong, _ := gossip.ParseKey(gossip.GenerateKey())
	for name, k := range map[string][]byte{"no key": nil, "another key": wrong} {
		if _, err := rogueMember(t, rogue.addr, hosts[0].GossipAddr(), k); !errors.Is(err, gossip.ErrEncryption) && !errors.Is(err, gossip.ErrJoin) {
			t.Fatalf("a rogue with %s joined: %v", name, err)
		}
	}
	// The honest cluster works (load reports, placement, module fetches)
	// and never calls the rogue.
	seen := runAcross(t, c, mod)
	if len(seen) != 2 || seen["rogue"] > 0 {
		t.Fatalf("tasks ran on %v, want both honest hosts and not the rogue", seen)
	}
	ms, err := c.Members(ctxFor(t, hangGuard))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.HostID == "rogue" {
			t.Fatalf("the rogue is a member: %+v", m)
		}
	}
	if reqs := rogue.requests(); len(reqs) > 0 {
		t.Fatalf("the rogue's API got %d requests (first %s), want none", len(reqs), reqs[0].path)
	}
}

// TestClusterRogueWithoutCredential: a member that gossips (with the key,
// or on a loopback cluster without one) but cannot prove it holds the
// cluster secret gets no token, no task, no module and no object, and its
// calls to the peer service are refused.
func TestClusterRogueWithoutCredential(t *testing.T) {
	key, _ := gossip.ParseKey(gossip.GenerateKey())
	for _, tc := range []struct {
		name string
		key  []byte
	}{{"with the gossip key", key}, {"loopback without a key", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			hosts := trustCluster(t, 2, tc.key)
			c := client.New(hosts[0].Addr(), client.WithToken(trustToken))
			mod := testutil.Register(t, c, guestPkg)
			rogue := startRogueAPI(t)
			if _, err := rogueMember(t, rogue.addr, hosts[0].GossipAddr(), tc.key); err != nil {
				t.Fatalf("the rogue could not join gossip: %v", err)
			}
			// Both honest hosts probe it, and list it as unverified.
			for _, h := range hosts {
				hc := client.New(h.Addr(), client.WithToken(trustToken))
				testutil.WaitMembers(t, hc, 2) // the rogue is not counted alive
				ctx := ctxFor(t, hangGuard)
				for {
					ms, err := hc.Members(ctx)
					if err != nil {
						t.Fatal(err)
					}
					state := ""
					for _, m := range ms {
						if m.HostID == "rogue" {
							state = m.State
						}
					}
					if state == "unverified" {
						break
					}
					if ctx.Err() != nil {
						t.Fatalf("%s lists the rogue as %q, want unverified", h.ID(), state)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			select {
			case <-rogue.got:
			case <-time.After(hangGuard):
				t.Fatal("the honest hosts never probed the rogue")
			}
			// Work goes to the honest hosts only, though the rogue offers 64 CPUs.
			seen := runAcross(t, c, mod)
			if len(seen) != 2 || seen["rogue"] > 0 {
				t.Fatalf("tasks ran on %v, want both honest hosts and not the rogue", seen)
			}
			reqs := rogue.requests()
			noToken(t, reqs)
			var stolen string
			for _, r := range reqs {
				if r.path != rayhostv1connect.TaskServiceHealthProcedure {
					t.Fatalf("the rogue got a %s call, want only health probes", r.path)
				}
				stolen = r.header.Get(host.PeerHeader)
			}
			t.Logf("the rogue got %d health probes, nothing else", len(reqs))
			// Its calls to an honest host's peer service are refused: without a
			// credential, with the users' token, with the credential it was sent.
			for name, hdr := range map[string]map[string]string{
				"nothing":                    nil,
				"the users' token":           {"Authorization": "Bearer " + trustToken},
				"the credential it was sent": {host.PeerHeader: stolen},
			} {
				if code := peerCall(t, hosts[0].Addr(), hdr); code != connect.CodeUnauthenticated {
					t.Fatalf("a peer call with %s: %v, want unauthenticated", name, code)
				}
			}
			stillServes(t, c, mod)
		})
	}
}
