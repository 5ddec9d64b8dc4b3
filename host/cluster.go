package host

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/gossip"
	"github.com/rayhost/rayhost/host/internal/cluster"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// ClusterConfig makes a host a member of a cluster: it gossips with the
// others (Serf), places tasks on them and moves objects between them.
type ClusterConfig struct {
	// Gossip configures membership. New fills in NodeName (the host's ID),
	// APIAddr (its advertised address) and Resources (its totals).
	Gossip gossip.Config
	// Seeds are gossip addresses of members to join; none starts a new
	// cluster.
	Seeds []string
	// JoinTimeout bounds how long New tries the seeds before it gives up.
	JoinTimeout time.Duration
	// LoadInterval is how often the host reads its peers' free resources.
	LoadInterval time.Duration
	// NewMembership creates the membership; nil uses Serf (gossip.New).
	NewMembership func(gossip.Config) (gossip.Membership, error)
}

// DefaultClusterConfig returns a cluster configuration with Serf's LAN
// timings that joins seeds.
func DefaultClusterConfig(seeds ...string) *ClusterConfig {
	return &ClusterConfig{Gossip: gossip.DefaultConfig(), Seeds: seeds, JoinTimeout: time.Minute, LoadInterval: 200 * time.Millisecond}
}

// conn is what calling a member takes: its clients, and a context that ends
// when it leaves or fails.
type conn struct {
	ctx  context.Context
	task rayhostv1connect.TaskServiceClient
	api  rayhostv1connect.PeerServiceClient
}

func connOf(c cluster.Conn) conn { return conn{ctx: c.Ctx, task: c.Task, api: c.API} }

// errNotMember: an address gossip does not list (cluster.ErrNotMember).
var errNotMember = cluster.ErrNotMember

// reach returns how to call the member whose API is at addr, if it is
// alive.
func (h *Host) reach(addr string) (conn, error) {
	c, err := h.cluster.Reach(addr)
	return connOf(c), err
}

// awaitMember is reach for an address a peer just named: an unknown one
// gets a moment to appear in gossip.
func (h *Host) awaitMember(ctx context.Context, addr string) (conn, error) {
	c, err := h.cluster.AwaitMember(ctx, addr)
	return connOf(c), err
}

// sleepCtx waits d, or less if ctx ends first (then it reports false).
func sleepCtx(ctx context.Context, d time.Duration) bool { return cluster.SleepCtx(ctx, d) }

// isMember reports whether addr is this host or a member gossip lists.
func (h *Host) isMember(addr string) bool { return addr == h.addr || h.cluster.NodeName(addr) != "" }

// hostAlive reports whether the host at addr is this host or a member
// that is alive.
func (h *Host) hostAlive(addr string) bool { return addr == h.addr || h.cluster.HostAlive(addr) }

// peerDown reports whether the host at addr is known to have failed or
// left, or is no member at all.
func (h *Host) peerDown(addr string) bool { return h.cluster.PeerDown(addr) }

// nodeName is the host ID of the member at addr ("" if unknown).
func (h *Host) nodeName(addr string) string {
	if addr == h.addr {
		return h.cfg.ID
	}
	return h.cluster.NodeName(addr)
}

// startCluster joins the cluster once the API listens (its address goes
// into the gossip tags).
func (h *Host) startCluster() error {
	cc := h.cfg.Cluster
	gc := cc.Gossip
	gc.NodeName = h.cfg.ID
	gc.APIAddr = h.addr
	gc.Resources = map[string]float64{"CPU": h.cfg.NumCPUs, "GPU": h.cfg.NumGPUs}
	maps.Copy(gc.Resources, h.cfg.Resources)
	if gc.Logger == nil {
		gc.Logger = h.log
	}
	newMembership := cc.NewMembership
	if newMembership == nil {
		newMembership = func(c gossip.Config) (gossip.Membership, error) { return gossip.New(c) }
	}
	m, err := newMembership(gc)
	if err != nil {
		return fmt.Errorf("host: gossip: %w", err)
	}
	var tlsCfg *tls.Config
	if h.cfg.TLSCertFile != "" {
		// Hosts of one cluster share a certificate (or a CA that signed
		// theirs): trust it besides the system's roots.
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if pem, err := os.ReadFile(h.cfg.TLSCertFile); err == nil {
			pool.AppendCertsFromPEM(pem)
		}
		tlsCfg = &tls.Config{RootCAs: pool}
	}
	// Members authenticate to each other with a credential derived from the
	// cluster secret and bound to the address called (auth.go), never with
	// the users' API token.
	key := peerKey(&h.cfg)
	c, err := cluster.New(cluster.Config{
		ID: h.cfg.ID, Addr: h.addr, Membership: m, Placement: hostPlacement{h},
		Credential: func(addr string) connect.Interceptor { return peerInterceptor(peerCredential(key, addr)) },
		Proven: func(addr string, answer http.Header) bool {
			return subtle.ConstantTimeCompare([]byte(answer.Get(peerProofHeader)), []byte(peerProof(key, addr))) == 1
		},
		Keyed: len(cc.Gossip.EncryptKey) > 0,
		TLS:   tlsCfg,
		// Hosts talk over a LAN and move objects that are often
		// incompressible: gzip (Connect's default) made pulls CPU-bound at
		// ~130 MB/s, so peers do not offer it.
		ClientOptions: []connect.ClientOption{connect.WithReadMaxBytes(h.cfg.MaxMessageBytes), connect.WithSendMaxBytes(h.cfg.MaxMessageBytes),
			connect.WithAcceptCompression("gzip", nil, nil)},
		LoadInterval: cc.LoadInterval,
		PeersFile:    filepath.Join(h.cfg.DataDir, "cluster-peers"),
		Logger:       h.log,
	})
	if err != nil {
		_ = m.Close()
		return fmt.Errorf("host: %w", err)
	}
	h.members, h.cluster = m, c
	if err := c.Start(h.serving, cc.Seeds, cc.JoinTimeout); err != nil {
		return fmt.Errorf("host: %w", err)
	}
	return nil
}

// hostPlacement applies what the cluster learns about members to the
// host's scheduler.
type hostPlacement struct{ h *Host }

// MemberChanged places on a member that is alive and proven, and takes
// one that left or failed out (failing the tasks only it could run).
func (p hostPlacement) MemberChanged(name string, alive, proven bool, total, avail scheduler.Resources) {
	h := p.h
	h.mu.Lock()
	var infeasible []*task
	switch {
	case alive && proven:
		h.sched.SetNode(name, total, avail)
	case alive:
		// Placed on once it proves it holds the cluster key (Loaded).
	default:
		for _, it := range h.sched.RemoveNode(name) {
			infeasible = append(infeasible, it.Value)
		}
	}
	starts := h.dispatchLocked()
	h.mu.Unlock()
	for _, t := range infeasible {
		h.fail(t, h.taskError(t, abi.ErrorInfeasible, fmt.Sprintf("host %s, the only one that could run it, is gone", name)))
	}
	h.start(starts)
}

// Loaded counts what a member reports free (between reports the
// scheduler counts what it placed there itself).
func (p hostPlacement) Loaded(name string, total, avail scheduler.Resources, first bool) {
	h := p.h
	h.mu.Lock()
	if first {
		h.sched.SetNode(name, total, avail)
	}
	h.sched.SetAvailable(name, avail)
	starts := h.dispatchLocked()
	h.mu.Unlock()
	h.start(starts)
}

// Unreachable takes a member that did not answer out of placement until
// its next load report.
func (p hostPlacement) Unreachable(name string) { p.h.unreachable(name) }

// unreachable takes a peer that did not answer out of placement until its
// next load report: a host that just died must not take (and fail) the
// retries of the tasks it was running before gossip declares it failed.
func (h *Host) unreachable(name string) {
	if name == "" {
		return
	}
	h.mu.Lock()
	h.sched.Block(name)
	h.mu.Unlock()
}

// leaveCluster leaves gracefully (others see the host left, not failed).
func (h *Host) leaveCluster() {
	if h.cluster == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.cluster.Leave(ctx); err != nil {
		h.log.Warn("leaving the cluster", "err", err)
	}
}

// clusterStatus lists the cluster's hosts as this one sees them.
func (h *Host) clusterStatus() []*rayhostv1.Member {
	h.mu.Lock()
	total, avail := h.sched.Total(), h.sched.Available()
	h.mu.Unlock()
	self := &rayhostv1.Member{HostId: h.cfg.ID, Address: h.addr, State: "alive", Total: resourcesProto(total), Available: resourcesProto(avail), Self: true}
	if h.cluster == nil {
		return []*rayhostv1.Member{self}
	}
	self.GossipAddress = h.cluster.Local().GossipAddr
	out := []*rayhostv1.Member{self}
	for _, m := range h.cluster.Members() {
		pm := &rayhostv1.Member{HostId: m.Name, Address: m.APIAddr, GossipAddress: m.GossipAddr, State: m.State, Total: resourcesProto(m.Total)}
		if m.Available != nil {
			pm.Available = resourcesProto(*m.Available)
		}
		out = append(out, pm)
	}
	return out
}
