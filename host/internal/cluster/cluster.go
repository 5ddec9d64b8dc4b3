// Package cluster is a host's view of the other hosts of its cluster: the
// membership gossip reports, the connections to each member (Connect
// clients, and a context that ends when the member leaves or fails), which
// members proved they hold the cluster key, and their resources (the input
// of placement). It tells the host what changed through Placement.
//
// It has its own lock: the host looks members up on paths that hold its
// own. It never calls an address gossip did not list: a request cannot
// make a host connect anywhere it likes.
package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/gossip"
	"github.com/rayhost/rayhost/host/internal/peerwire"
	"github.com/rayhost/rayhost/internal/httpc"
	"github.com/rayhost/rayhost/internal/scheduler"
)

var (
	// ErrNotMember: an address gossip does not list (or whose host has
	// not proven it holds the cluster key). Hosts call only members gossip
	// told them about, never an address taken from a request (an
	// ObjectRef's owner, a holder, a module's source).
	ErrNotMember = errors.New("not a member of this cluster")
	// ErrMemberDown: a member that left or failed.
	ErrMemberDown = errors.New("member is down")
	// ErrInvalidConfig: New was given a bad Config.
	ErrInvalidConfig = errors.New("cluster: invalid config")
)

// Placement is what the cluster tells the host about its members. Calls
// come from the cluster's goroutines, never with its lock held, one
// member's in the order the changes happened.
type Placement interface {
	// MemberChanged: gossip reports a change of the member name. alive and
	// proven: place tasks on it, with total resources of which avail are
	// free (at its last load report, else total); alive, not proven: not
	// yet (Loaded says when); not alive: it left or failed.
	MemberChanged(name string, alive, proven bool, total, avail scheduler.Resources)
	// Loaded: a proven member reported avail free; first: it proved with
	// this report that it holds the cluster key.
	Loaded(name string, total, avail scheduler.Resources, first bool)
	// Unreachable: the member did not answer (or could not prove it holds
	// the cluster key): place nothing more there until it reports again.
	Unreachable(name string)
}

// Config configures a Cluster. Zero values take the defaults noted.
type Config struct {
	// ID is this host's name (its gossip node name); Addr its API address.
	// Required.
	ID, Addr string
	// Membership is the gossip membership (gossip.New or gossip.Memory).
	// Required; Close closes it.
	Membership gossip.Membership
	// Placement receives what the cluster learns. Required.
	Placement Placement
	// Credential returns the headers that carry this host's credential on
	// calls to the member at addr (Connect calls and raw ones). Required.
	Credential func(addr string) http.Header
	// Proven reports whether an answer from the member at addr carries its
	// proof that it holds the cluster key. Required.
	Proven func(addr string, answer http.Header) bool
	// Keyed: the gossip is encrypted, so every member proved it holds the
	// key. Without a key, members that advertise an API address beyond
	// loopback are ignored.
	Keyed bool
	// TLS, if set, is used to call members over HTTPS; nil: h2c.
	TLS *tls.Config
	// HTTPClient overrides the client members are called with (TLS is then
	// unused); nil: an HTTP/2 client made for TLS.
	HTTPClient *http.Client
	// ClientOptions are added to every client (message size limits, say).
	ClientOptions []connect.ClientOption
	// LoadInterval is how often members' free resources are read
	// (default 200ms).
	LoadInterval time.Duration
	// LoadTimeout bounds one load report (default 1s).
	LoadTimeout time.Duration
	// MemberGrace is how long AwaitMember waits for an unknown address to
	// appear in gossip (default 2s).
	MemberGrace time.Duration
	// PeersFile keeps the gossip addresses of the members last seen alive,
	// so a host restarted on the same data dir rejoins them; "" for none.
	PeersFile string
	// Logger; nil discards.
	Logger *slog.Logger
}

func (cfg *Config) validate() error {
	switch {
	case cfg.ID == "" || cfg.Addr == "":
		return fmt.Errorf("%w: ID and Addr are required", ErrInvalidConfig)
	case cfg.Membership == nil || cfg.Placement == nil:
		return fmt.Errorf("%w: Membership and Placement are required", ErrInvalidConfig)
	case cfg.Credential == nil || cfg.Proven == nil:
		return fmt.Errorf("%w: Credential and Proven are required", ErrInvalidConfig)
	case cfg.LoadInterval < 0 || cfg.LoadTimeout < 0 || cfg.MemberGrace < 0:
		return fmt.Errorf("%w: negative duration", ErrInvalidConfig)
	}
	if cfg.LoadInterval == 0 {
		cfg.LoadInterval = 200 * time.Millisecond
	}
	if cfg.LoadTimeout == 0 {
		cfg.LoadTimeout = time.Second
	}
	if cfg.MemberGrace == 0 {
		cfg.MemberGrace = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
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
	// secret, in this peer protocol version. Until then it is given no
	// work, no module and no object, and no address it names is pulled
	// from.
	proven bool
	// ctx ends when the peer leaves or fails: calls to it stop waiting.
	ctx    context.Context
	cancel context.CancelFunc
	task   rayhostv1connect.TaskServiceClient
	api    rayhostv1connect.PeerServiceClient
	raw    raw
}

// Cluster is the host's view of its members. A nil *Cluster is a host in
// no cluster: its lookups find no member.
type Cluster struct {
	cfg    Config
	log    *slog.Logger
	httpc  *http.Client
	scheme string

	mu     sync.Mutex
	byName map[string]*peer
	byAddr map[string]*peer
	closed bool

	// savedPeers is what PeersFile holds (the watching goroutine only).
	savedPeers string

	ctx  context.Context // ends at Close; the goroutines' lifetime
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// New returns a cluster view over cfg.Membership. Start starts it.
func New(cfg Config) (*Cluster, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, log: cfg.Logger, byName: map[string]*peer{}, byAddr: map[string]*peer{}, scheme: "http://", httpc: cfg.HTTPClient}
	if cfg.TLS != nil {
		c.scheme = "https://"
	}
	if c.httpc == nil {
		c.httpc = httpc.New(cfg.TLS)
	}
	c.ctx, c.stop = context.WithCancel(context.Background())
	return c, nil
}

// Start follows membership until ctx ends or Close: it applies the
// members gossip lists, reads their loads, and joins seeds (within
// joinTimeout; an error if none answers). Without seeds it rejoins, in the
// background, the members PeersFile recorded before a restart.
func (c *Cluster) Start(ctx context.Context, seeds []string, joinTimeout time.Duration) error {
	stop := context.AfterFunc(ctx, c.stop)
	c.wg.Go(func() {
		<-c.ctx.Done()
		stop()
	})
	c.wg.Go(c.watchMembers)
	c.wg.Go(c.readLoads)
	known := c.knownPeers()
	m := c.cfg.Membership
	if len(seeds) > 0 {
		jctx, cancel := context.WithTimeout(c.ctx, joinTimeout)
		defer cancel()
		n, err := m.Join(jctx, seeds)
		if err != nil {
			return fmt.Errorf("joining %v: %w", seeds, err)
		}
		c.log.Info("joined the cluster", "seeds", seeds, "answered", n)
	} else if len(known) > 0 {
		// A restart on the same data dir: rejoin the members known last
		// (Serf's snapshot may have missed them after a crash).
		c.wg.Go(func() {
			jctx, cancel := context.WithTimeout(c.ctx, joinTimeout)
			defer cancel()
			if n, err := m.Join(jctx, known); err == nil {
				c.log.Info("rejoined the cluster", "members", known, "answered", n)
			} else {
				c.log.Warn("could not rejoin the members known before the restart", "members", known, "err", err)
			}
		})
	}
	return nil
}

// Leave leaves gracefully (others see the host left, not failed).
func (c *Cluster) Leave(ctx context.Context) error {
	if err := c.cfg.Membership.Leave(ctx); err != nil && !errors.Is(err, gossip.ErrClosed) {
		return err
	}
	return nil
}

// Close stops following membership, closes it (if Leave did not) and ends
// every call to a member; it waits for the cluster's goroutines.
func (c *Cluster) Close() error {
	c.stop()
	err := c.cfg.Membership.Close()
	if errors.Is(err, gossip.ErrClosed) {
		err = nil
	}
	c.mu.Lock()
	c.closed = true
	for _, p := range c.byName {
		if p.cancel != nil {
			p.cancel()
		}
	}
	c.mu.Unlock()
	c.wg.Wait()
	return err
}

// Local is this host as gossip sees it.
func (c *Cluster) Local() gossip.Member { return c.cfg.Membership.Local() }

// connectLocked (re)creates p's clients and context.
func (c *Cluster) connectLocked(p *peer) {
	if p.cancel != nil {
		p.cancel()
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	if c.closed {
		p.cancel()
	}
	base := c.scheme + p.addr
	// The credential for this address, and the peer protocol version.
	cred := c.cfg.Credential(p.addr)
	opts := append(slices.Clip(c.cfg.ClientOptions), connect.WithInterceptors(headers(cred), peerwire.ClientInterceptor()))
	p.task = rayhostv1connect.NewTaskServiceClient(c.httpc, base, opts...)
	p.api = rayhostv1connect.NewPeerServiceClient(c.httpc, base, opts...)
	p.raw = raw{httpc: c.httpc, base: base, cred: cred}
}
