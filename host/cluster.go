package host

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/rayhost/rayhost/client"
	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/gossip"
	"github.com/rayhost/rayhost/host/internal/peerwire"
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

// peer is another host of the cluster, as this one sees it.
type peer struct {
	name, addr string
	status     gossip.Status
	gossipAddr string
	warned     bool // about a refused credential or a missing proof, once
	total      scheduler.Resources
	avail      *scheduler.Resources // at the last load report
	// proven: it answered a call with the proof that it holds the cluster
	// secret (peerProof). Until then it is given no work, no module and
	// no object, and no address it names is pulled from.
	proven bool
	// ctx ends when the peer leaves or fails: calls to it stop waiting.
	ctx    context.Context
	cancel context.CancelFunc
	task   rayhostv1connect.TaskServiceClient
	api    rayhostv1connect.PeerServiceClient
}

// cluster is the host's view of its peers. It has its own lock: peers are
// looked up on paths that hold Host.mu.
type cluster struct {
	mu     sync.Mutex
	byName map[string]*peer
	byAddr map[string]*peer
	httpc  *http.Client
	opts   []connect.ClientOption
	scheme string
	// peerKey keys the credentials this host sends to members; keyed: the
	// gossip is encrypted, so every member proved it holds the key.
	peerKey []byte
	keyed   bool
	// savedPeers is what the cluster-peers file holds (watchMembers only).
	savedPeers string
}

func (h *Host) newCluster() (*cluster, error) {
	c := &cluster{byName: map[string]*peer{}, byAddr: map[string]*peer{}, scheme: "http://"}
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
		c.scheme = "https://"
	}
	c.httpc = client.NewHTTPClient(tlsCfg)
	// Hosts talk over a LAN and move objects that are often incompressible:
	// gzip (Connect's default) made pulls CPU-bound at ~130 MB/s, so peers
	// do not offer it.
	c.opts = []connect.ClientOption{connect.WithReadMaxBytes(h.cfg.MaxMessageBytes), connect.WithSendMaxBytes(h.cfg.MaxMessageBytes),
		connect.WithAcceptCompression("gzip", nil, nil)}
	// Members authenticate to each other with a credential derived from the
	// cluster secret and bound to the address called (auth.go), never with
	// the users' API token.
	c.peerKey = peerKey(&h.cfg)
	c.keyed = len(h.cfg.Cluster.Gossip.EncryptKey) > 0
	return c, nil
}

// connectLocked (re)creates p's clients and context.
func (c *cluster) connectLocked(p *peer) {
	if p.cancel != nil {
		p.cancel()
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	base := c.scheme + p.addr
	opts := append(slices.Clip(c.opts), connect.WithInterceptors(peerInterceptor(peerCredential(c.peerKey, p.addr)), peerwire.ClientInterceptor()))
	p.task = rayhostv1connect.NewTaskServiceClient(c.httpc, base, opts...)
	p.api = rayhostv1connect.NewPeerServiceClient(c.httpc, base, opts...)
}

// closeAll ends every call to a peer (the host is closing).
func (c *cluster) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.byAddr {
		if p.cancel != nil {
			p.cancel()
		}
	}
	for _, p := range c.byName {
		if p.cancel != nil {
			p.cancel()
		}
	}
}

// conn is what calling a member takes: its clients, and a context that ends
// when it leaves or fails.
type conn struct {
	ctx  context.Context
	task rayhostv1connect.TaskServiceClient
	api  rayhostv1connect.PeerServiceClient
}

// errNotMember: an address gossip does not list. Hosts call only members
// gossip told them about, never an address taken from a request (an
// ObjectRef's owner, a holder, a module's source): a request cannot make a
// host connect anywhere it likes.
var errNotMember = errors.New("not a member of this cluster")

// reach returns how to call the member whose API is at addr, if it is
// alive.
func (h *Host) reach(addr string) (conn, error) {
	if h.cluster == nil {
		return conn{}, fmt.Errorf("%s: %w (this host is in no cluster)", addr, errNotMember)
	}
	c := h.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.byAddr[addr]
	switch {
	case p == nil || p.name == "":
		return conn{}, fmt.Errorf("%s: %w", addr, errNotMember)
	case !p.proven:
		return conn{}, fmt.Errorf("%s: %w (it has not proven it holds the cluster key)", addr, errNotMember)
	case p.ctx == nil || p.ctx.Err() != nil:
		return conn{}, fmt.Errorf("%s (%s) is %s", p.name, addr, p.status)
	}
	return conn{ctx: p.ctx, task: p.task, api: p.api}, nil
}

// awaitMember is reach for an address a peer just named (a task's owner,
// an ObjectRef's): gossip may not have told this host of a host that just
// joined, so an unknown address gets a moment (ownerGrace) to appear.
func (h *Host) awaitMember(ctx context.Context, addr string) (conn, error) {
	deadline := time.Now().Add(ownerGrace)
	for {
		pc, err := h.reach(addr)
		if err == nil || !errors.Is(err, errNotMember) || time.Now().After(deadline) {
			return pc, err
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return conn{}, ctx.Err()
		}
	}
}

// ownerGrace is how long an address a peer named may be unknown to gossip
// before it counts as no member.
const ownerGrace = 2 * time.Second

// sleepCtx waits d, or less if ctx ends first (then it reports false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// isMember reports whether addr is this host or a member gossip lists.
func (h *Host) isMember(addr string) bool {
	return addr == h.addr || h.nodeName(addr) != ""
}

// hostAlive reports whether the host at addr is this host or a member
// that is alive.
func (h *Host) hostAlive(addr string) bool {
	if addr == h.addr {
		return true
	}
	if h.cluster == nil {
		return false
	}
	c := h.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.byAddr[addr]
	return p != nil && p.name != "" && p.proven && p.status == gossip.StatusAlive
}

// peerDown reports whether the host at addr is known to have failed or
// left, or is no member at all.
func (h *Host) peerDown(addr string) bool {
	if h.cluster == nil || addr == h.addr {
		return false
	}
	c := h.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.byAddr[addr]
	return p == nil || p.name == "" || !p.proven || p.status == gossip.StatusFailed || p.status == gossip.StatusLeft
}

// nodeName is the host ID of the member at addr ("" if unknown).
func (h *Host) nodeName(addr string) string {
	if addr == h.addr {
		return h.cfg.ID
	}
	if h.cluster == nil {
		return ""
	}
	h.cluster.mu.Lock()
	defer h.cluster.mu.Unlock()
	if p := h.cluster.byAddr[addr]; p != nil && p.proven {
		return p.name
	}
	return ""
}

// peerNamed returns the member named name, if it is alive.
func (h *Host) peerNamed(name string) *peer {
	h.cluster.mu.Lock()
	defer h.cluster.mu.Unlock()
	if p := h.cluster.byName[name]; p != nil && p.proven && p.status == gossip.StatusAlive {
		return p
	}
	return nil
}

// startCluster joins the cluster once the API listens (its address goes
// into the gossip tags).
func (h *Host) startCluster() error {
	cc := h.cfg.Cluster
	var err error
	if h.cluster, err = h.newCluster(); err != nil {
		return err
	}
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
	h.members = m
	h.wg.Add(2)
	go h.watchMembers()
	go h.readLoads()
	known := h.knownPeers()
	if len(cc.Seeds) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), cc.JoinTimeout)
		defer cancel()
		n, err := m.Join(ctx, cc.Seeds)
		if err != nil {
			return fmt.Errorf("host: joining %v: %w", cc.Seeds, err)
		}
		h.log.Info("joined the cluster", "seeds", cc.Seeds, "answered", n)
	} else if len(known) > 0 {
		// A restart on the same data dir: rejoin the members known last
		// (Serf's snapshot may have missed them after a crash).
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), cc.JoinTimeout)
			defer cancel()
			stop := context.AfterFunc(h.serving, cancel)
			defer stop()
			if n, err := m.Join(ctx, known); err == nil {
				h.log.Info("rejoined the cluster", "members", known, "answered", n)
			} else {
				h.log.Warn("could not rejoin the members known before the restart", "members", known, "err", err)
			}
		}()
	}
	return nil
}

// peersFile keeps the gossip addresses of the members last seen alive, so
// a host restarted on the same data dir can rejoin them.
func (h *Host) peersFile() string { return filepath.Join(h.cfg.DataDir, "cluster-peers") }

func (h *Host) knownPeers() []string {
	b, err := os.ReadFile(h.peersFile())
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

// savePeers records the alive members' gossip addresses, if they changed.
func (h *Host) savePeers() {
	h.cluster.mu.Lock()
	var addrs []string
	for _, p := range h.cluster.byName {
		if p.status == gossip.StatusAlive && p.gossipAddr != "" {
			addrs = append(addrs, p.gossipAddr)
		}
	}
	h.cluster.mu.Unlock()
	if len(addrs) == 0 {
		return // keep what the last members were: a lone host rejoins them
	}
	slices.Sort(addrs)
	data := strings.Join(addrs, "\n") + "\n"
	if data == h.cluster.savedPeers {
		return
	}
	tmp := h.peersFile() + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err == nil && os.Rename(tmp, h.peersFile()) == nil {
		h.cluster.savedPeers = data
	}
}

// watchMembers applies membership changes until Close.
func (h *Host) watchMembers() {
	defer h.wg.Done()
	for _, m := range h.members.Members() {
		h.memberChanged(m)
	}
	for {
		select {
		case ev := <-h.members.Events():
			h.memberChanged(ev.Member)
			// At once: a host killed a moment after a peer came back on a
			// new address must still find it when it restarts.
			h.savePeers()
		case <-h.done:
			return
		}
	}
}

// memberChanged brings the peer table and the scheduler's nodes up to date
// with m, and starts recovery when m failed or left.
func (h *Host) memberChanged(m gossip.Member) {
	if m.Name == h.cfg.ID {
		return
	}
	total, err := scheduler.Make(m.Resources["CPU"], m.Resources["GPU"], customOf(m.Resources))
	if err != nil {
		h.log.Warn("a member advertises invalid resources", "member", m.Name, "err", err)
		return
	}
	if !h.cluster.keyed && !loopbackAddr(m.APIAddr) {
		// Gossip without a key proves nothing about who sent it (gossip.New
		// allows that on loopback only): an address it names beyond this
		// machine is not called.
		h.log.Warn("ignoring a member that advertises an API address beyond loopback on a cluster without a gossip key", "member", m.Name, "address", m.APIAddr)
		return
	}
	c := h.cluster
	c.mu.Lock()
	p := c.byName[m.Name]
	if p == nil {
		p = &peer{name: m.Name}
		c.byName[m.Name] = p
	}
	alive := m.Status == gossip.StatusAlive
	if p.addr != m.APIAddr {
		// It moved: calls to the old address end, new ones go to the new.
		if c.byAddr[p.addr] == p {
			delete(c.byAddr, p.addr)
		}
		p.addr = m.APIAddr
		if p.cancel != nil {
			p.cancel()
		}
		p.ctx = nil
		p.proven = false // whoever is there now proves it again
	}
	// An address belongs to the member alive there: a gone member's
	// events must not take it from a new host that reuses it.
	if cur := c.byAddr[p.addr]; cur == nil || cur == p || alive {
		c.byAddr[p.addr] = p
	}
	was := p.status
	p.status, p.total, p.gossipAddr = m.Status, total, m.GossipAddr
	probe := false
	if alive && (was != gossip.StatusAlive || p.ctx == nil || p.ctx.Err() != nil) {
		c.connectLocked(p)
		p.avail = nil
		p.proven, probe = false, true
	}
	proven := p.proven
	if !alive && p.cancel != nil {
		p.cancel() // calls to it (running tasks, pulls) end now
	}
	avail := total
	if p.avail != nil {
		avail = *p.avail
	}
	c.mu.Unlock()

	h.mu.Lock()
	var infeasible []*task
	switch {
	case alive && proven:
		h.sched.SetNode(m.Name, total, avail)
	case alive:
		// Placed on once it proves it holds the cluster key (readLoad).
	default:
		for _, it := range h.sched.RemoveNode(m.Name) {
			infeasible = append(infeasible, it.Value)
		}
	}
	starts := h.dispatchLocked()
	h.mu.Unlock()
	if was != m.Status {
		h.log.Info("member changed", "member", m.Name, "address", m.APIAddr, "state", m.Status.String())
	}
	for _, t := range infeasible {
		h.fail(t, h.taskError(t, abi.ErrorInfeasible, fmt.Sprintf("host %s, the only one that could run it, is gone", m.Name)))
	}
	h.start(starts)
	if probe {
		// Ask it for its proof now rather than at the next load report.
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.readLoad(p)
		}()
	}
}

// loopbackAddr reports whether addr is host:port with a loopback IP.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func customOf(res map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range res {
		if k != "CPU" && k != "GPU" {
			out[k] = v
		}
	}
	return out
}

// readLoads reads each alive peer's free resources every LoadInterval, so
// the scheduler places tasks on what is free now. Between reports it counts
// what it placed itself.
func (h *Host) readLoads() {
	defer h.wg.Done()
	tick := time.NewTicker(h.cfg.Cluster.LoadInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-h.done:
			return
		}
		h.cluster.mu.Lock()
		var ps []*peer
		for _, p := range h.cluster.byName {
			if p.status == gossip.StatusAlive {
				ps = append(ps, p)
			}
		}
		h.cluster.mu.Unlock()
		var wg sync.WaitGroup
		for _, p := range ps {
			wg.Go(func() { h.readLoad(p) })
		}
		wg.Wait()
	}
}

func (h *Host) readLoad(p *peer) {
	h.cluster.mu.Lock()
	pctx, svc, name, addr, total := p.ctx, p.task, p.name, p.addr, p.total
	h.cluster.mu.Unlock()
	if pctx == nil {
		return
	}
	ctx, cancel := context.WithTimeout(pctx, time.Second)
	defer cancel()
	res, err := svc.Health(ctx, connect.NewRequest(&rayhostv1.HealthRequest{}))
	if err != nil {
		h.unreachable(name)
		if connect.CodeOf(err) == connect.CodeUnauthenticated {
			h.cluster.mu.Lock()
			warn := !p.warned
			p.warned = true
			h.cluster.mu.Unlock()
			if warn {
				h.log.Error("a member refuses this host's credential: hosts of a cluster must share the gossip key (--encrypt), or on loopback without one the token (--token); it gets no work from here", "member", name, "address", addr)
			}
		}
		return
	}
	if subtle.ConstantTimeCompare([]byte(res.Header().Get(peerProofHeader)), []byte(peerProof(h.cluster.peerKey, addr))) != 1 {
		// It took a call but cannot prove it holds the cluster key: a
		// stranger on the member list. It gets nothing from this host.
		h.unreachable(name)
		h.cluster.mu.Lock()
		warn := !p.warned
		p.warned = true
		h.cluster.mu.Unlock()
		if warn {
			h.log.Error("a member answers without proof that it holds the cluster key: it gets no work, module or object from here", "member", name, "address", addr)
		}
		return
	}
	avail, err := resourcesFromProto(res.Msg.GetAvailable())
	if err != nil {
		return
	}
	h.cluster.mu.Lock()
	if p.addr != addr || p.ctx != pctx {
		h.cluster.mu.Unlock()
		return // it moved or reconnected meanwhile: the next report counts
	}
	p.avail = &avail
	first := !p.proven
	p.proven = true
	h.cluster.mu.Unlock()
	h.mu.Lock()
	if first {
		h.sched.SetNode(name, total, avail)
	}
	h.sched.SetAvailable(name, avail)
	starts := h.dispatchLocked()
	h.mu.Unlock()
	h.start(starts)
}

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

func resourcesFromProto(r *rayhostv1.Resources) (scheduler.Resources, error) {
	return scheduler.Make(r.GetNumCpus(), r.GetNumGpus(), r.GetCustom())
}

// leaveCluster leaves gracefully (others see the host left, not failed).
func (h *Host) leaveCluster() {
	if h.members == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.members.Leave(ctx); err != nil && !errors.Is(err, gossip.ErrClosed) {
		h.log.Warn("leaving the cluster", "err", err)
	}
}

// Members lists the cluster's hosts as this one sees them.
func (h *Host) clusterStatus() []*rayhostv1.Member {
	h.mu.Lock()
	total, avail := h.sched.Total(), h.sched.Available()
	h.mu.Unlock()
	self := &rayhostv1.Member{HostId: h.cfg.ID, Address: h.addr, State: "alive", Total: resourcesProto(total), Available: resourcesProto(avail), Self: true}
	if h.members == nil {
		return []*rayhostv1.Member{self}
	}
	self.GossipAddress = h.members.Local().GossipAddr
	out := []*rayhostv1.Member{self}
	h.cluster.mu.Lock()
	avails := map[string]*scheduler.Resources{}
	unproven := map[string]bool{}
	for name, p := range h.cluster.byName {
		avails[name] = p.avail
		unproven[name] = !p.proven
	}
	h.cluster.mu.Unlock()
	for _, m := range h.members.Members() {
		if m.Name == h.cfg.ID {
			continue
		}
		t, _ := scheduler.Make(m.Resources["CPU"], m.Resources["GPU"], customOf(m.Resources))
		pm := &rayhostv1.Member{HostId: m.Name, Address: m.APIAddr, GossipAddress: m.GossipAddr, State: m.Status.String(), Total: resourcesProto(t)}
		if m.Status == gossip.StatusAlive && unproven[m.Name] {
			// Alive in gossip, but it has not proven it holds the cluster
			// key (yet): it gets no work.
			pm.State = "unverified"
		}
		if a := avails[m.Name]; a != nil && m.Status == gossip.StatusAlive {
			pm.Available = resourcesProto(*a)
		}
		out = append(out, pm)
	}
	slices.SortFunc(out[1:], func(a, b *rayhostv1.Member) int {
		switch {
		case a.HostId < b.HostId:
			return -1
		case a.HostId > b.HostId:
			return 1
		}
		return 0
	})
	return out
}

func (a *api) ClusterStatus(ctx context.Context, req *connect.Request[rayhostv1.ClusterStatusRequest]) (*connect.Response[rayhostv1.ClusterStatusResponse], error) {
	return connect.NewResponse(&rayhostv1.ClusterStatusResponse{Members: a.h.clusterStatus()}), nil
}
