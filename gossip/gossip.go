package gossip

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Membership is the seam the host depends on: *Serf is the real one,
// *Memory its in-memory twin for tests.
type Membership interface {
	// Local returns this member as the cluster sees it.
	Local() Member
	// Members returns every known member, the local one included, sorted by
	// Name. Failed and left members stay listed until they are reaped.
	Members() []Member
	// Events delivers membership changes, in order. The queue behind it is
	// unbounded, so a slow reader never stalls gossip, but the single
	// consumer must keep draining it. The channel is never closed: stop
	// reading when you Leave or Close.
	Events() <-chan Event
	// Join contacts seeds (gossip addresses, host:port) until at least one
	// answers or ctx ends, and returns how many answered. It fails at once
	// with ErrEncryption or ErrDuplicateName, which retrying cannot fix, and
	// with ErrJoin (wrapping the last error) when ctx ends first. No seeds
	// is not an error: the member starts a cluster of its own.
	Join(ctx context.Context, seeds []string) (int, error)
	// UpdateResources publishes new resource totals to the cluster.
	UpdateResources(total map[string]float64) error
	// Leave tells the cluster this member is going (others see StatusLeft)
	// and shuts it down. If ctx ends first it shuts down anyway and
	// returns ctx's error.
	Leave(ctx context.Context) error
	// Close shuts the member down without a leave: the others see it fail
	// (StatusFailed). Close is idempotent.
	Close() error
}

// Status is a member's state as seen by the local member.
type Status int

// Member states. The zero Status is not a state; String gives "unknown".
const (
	// StatusAlive: the member answers probes.
	StatusAlive Status = iota + 1
	// StatusLeaving: the member announced it is leaving.
	StatusLeaving
	// StatusLeft: the member left gracefully.
	StatusLeft
	// StatusFailed: the member stopped answering probes (crash, partition,
	// Close without Leave).
	StatusFailed
)

// String returns "alive", "leaving", "left", "failed" or "unknown".
func (s Status) String() string {
	switch s {
	case StatusAlive:
		return "alive"
	case StatusLeaving:
		return "leaving"
	case StatusLeft:
		return "left"
	case StatusFailed:
		return "failed"
	default:
		return "unknown"
	}
}

// Member is a rayhost host as gossip knows it.
type Member struct {
	// Name is the unique node name: the host's ID.
	Name string
	// APIAddr is the host:port of the host's Connect API.
	APIAddr string
	// GossipAddr is the host:port of its gossip endpoint (what Join takes).
	GossipAddr string
	// Resources are the host's total resources: "CPU", "GPU" and custom
	// names. Entries a peer sent that cannot be decoded are left out.
	Resources map[string]float64
	// Status is the member's state.
	Status Status
}

// EventKind says what happened to a member.
type EventKind int

// Event kinds. The zero EventKind is not a kind; String gives "unknown".
const (
	// EventJoin: a member joined, or came back after failing or leaving.
	EventJoin EventKind = iota + 1
	// EventUpdate: a member published new tags (API address, resources).
	EventUpdate
	// EventFailed: a member stopped answering probes.
	EventFailed
	// EventLeft: a member left gracefully.
	EventLeft
	// EventReap: a failed or left member was forgotten; it is no longer in
	// Members.
	EventReap
)

// String returns "join", "update", "failed", "left", "reap" or "unknown".
func (k EventKind) String() string {
	switch k {
	case EventJoin:
		return "join"
	case EventUpdate:
		return "update"
	case EventFailed:
		return "failed"
	case EventLeft:
		return "left"
	case EventReap:
		return "reap"
	default:
		return "unknown"
	}
}

// Event is one membership change, about one member.
type Event struct {
	Kind   EventKind
	Member Member
}

// Timings are the gossip and failure-detection intervals. Every member of a
// cluster should use the same ones.
type Timings struct {
	// ProbeInterval is how often a member probes a random other one.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a probe waits for its ack; keep it above the
	// 99th percentile round trip.
	ProbeTimeout time.Duration
	// GossipInterval is how often queued broadcasts are sent.
	GossipInterval time.Duration
	// TCPTimeout bounds a TCP exchange (join, push/pull, fallback probe). A
	// Join attempt against an unreachable seed may take this long, even past
	// its context's deadline.
	TCPTimeout time.Duration
	// PushPullInterval is how often a member syncs its full state with a
	// random other one. It is also what eventually lets a restarted member
	// in if its first attempt came before DeadNodeReclaimTime.
	PushPullInterval time.Duration
	// ReconnectInterval is how often a member tries to reconnect to a failed
	// one: this is what heals a partition.
	ReconnectInterval time.Duration
	// ReconnectTimeout is how long a failed member is kept (and retried)
	// before it is reaped.
	ReconnectTimeout time.Duration
	// TombstoneTimeout is how long a left member is kept before it is reaped.
	TombstoneTimeout time.Duration
	// ReapInterval is how often reaping runs.
	ReapInterval time.Duration
	// DeadNodeReclaimTime is how long a member must have been failed before
	// its name may come back from another address (a host restarted on a
	// new port). Shorter lets restarts in sooner; longer guards a member
	// wrongly declared failed against a twin taking its name.
	DeadNodeReclaimTime time.Duration
	// LeavePropagateDelay is how long Leave keeps answering probes after
	// announcing the leave, so that the others see "left" rather than
	// "failed".
	LeavePropagateDelay time.Duration
	// SuspicionMult scales how long a member is suspected before it is
	// declared failed (SuspicionMult * log(N+1) * ProbeInterval).
	SuspicionMult int
	// SuspicionMaxTimeoutMult bounds the suspicion time when too few other
	// members confirm the suspicion (a two-member cluster has none) to
	// this multiple of the time above; 0 means memberlist's 6.
	SuspicionMaxTimeoutMult int
}

// LANTimings returns memberlist's LAN defaults (failure detected in about
// 5 s), except that failed and left members are forgotten after 10 minutes
// instead of Serf's 24 hours: a rayhost host that is gone for 10 minutes is
// not coming back under the same name, and a shorter list means fewer
// reconnect attempts to dead addresses.
func LANTimings() Timings {
	return Timings{
		ProbeInterval:       time.Second,
		ProbeTimeout:        500 * time.Millisecond,
		GossipInterval:      200 * time.Millisecond,
		TCPTimeout:          10 * time.Second,
		PushPullInterval:    30 * time.Second,
		ReconnectInterval:   30 * time.Second,
		ReconnectTimeout:    10 * time.Minute,
		TombstoneTimeout:    10 * time.Minute,
		ReapInterval:        15 * time.Second,
		DeadNodeReclaimTime: 30 * time.Second, // as Consul does
		LeavePropagateDelay: time.Second,
		SuspicionMult:       4,
	}
}

// FastTimings returns timings for tests on one machine: a crash is detected
// in about 1 s (2 s in a cluster of two, where nobody confirms a
// suspicion), a healed member is reconnected within about a second,
// and Leave takes about 100 ms. They still leave a loaded machine (race
// detector, two cores, several hosts) room to answer probes: halving them
// made members declare each other failed under `go test -race ./...`.
func FastTimings() Timings {
	return Timings{
		ProbeInterval:       250 * time.Millisecond,
		ProbeTimeout:        200 * time.Millisecond,
		GossipInterval:      50 * time.Millisecond,
		TCPTimeout:          time.Second,
		PushPullInterval:    time.Second,
		ReconnectInterval:   500 * time.Millisecond,
		ReconnectTimeout:    30 * time.Second,
		TombstoneTimeout:    30 * time.Second,
		ReapInterval:        time.Second,
		DeadNodeReclaimTime: 100 * time.Millisecond,
		LeavePropagateDelay: 100 * time.Millisecond,
		SuspicionMult:       3,
		// A lone suspecter waits 2 × 0.75 s, not 6 ×.
		SuspicionMaxTimeoutMult: 2,
	}
}

// validate reports the first timing that cannot work.
func (t Timings) validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"ProbeInterval", t.ProbeInterval},
		{"ProbeTimeout", t.ProbeTimeout},
		{"GossipInterval", t.GossipInterval},
		{"TCPTimeout", t.TCPTimeout},
		{"PushPullInterval", t.PushPullInterval},
		{"ReconnectInterval", t.ReconnectInterval},
		{"ReconnectTimeout", t.ReconnectTimeout},
		{"TombstoneTimeout", t.TombstoneTimeout},
		{"ReapInterval", t.ReapInterval},
		{"DeadNodeReclaimTime", t.DeadNodeReclaimTime},
	} {
		if d.v <= 0 {
			return fmt.Errorf("%w: Timings.%s must be positive, got %v", ErrInvalidConfig, d.name, d.v)
		}
	}
	if t.LeavePropagateDelay < 0 {
		return fmt.Errorf("%w: Timings.LeavePropagateDelay must not be negative", ErrInvalidConfig)
	}
	if t.SuspicionMult < 1 {
		return fmt.Errorf("%w: Timings.SuspicionMult must be at least 1, got %d", ErrInvalidConfig, t.SuspicionMult)
	}
	if t.ProbeTimeout > t.ProbeInterval {
		return fmt.Errorf("%w: Timings.ProbeTimeout (%v) must not exceed ProbeInterval (%v)", ErrInvalidConfig, t.ProbeTimeout, t.ProbeInterval)
	}
	return nil
}

// Config configures a member. Fill it from DefaultConfig.
type Config struct {
	// NodeName is the member's unique name in the cluster (the host's ID).
	// Required.
	NodeName string
	// BindAddr is the "ip:port" Serf listens on, TCP and UDP. Port 0 picks a
	// free port; Local().GossipAddr shows the one picked.
	BindAddr string
	// AdvertiseAddr is the "ip:port" the others reach this member at; ""
	// means the bind address (with 0.0.0.0, an address of this machine).
	// Port 0 means the bound port; a non-zero port needs a non-zero bind
	// port, since memberlist advertises the bound port when it picks one.
	AdvertiseAddr string
	// APIAddr is the host:port of the host's Connect API, published to the
	// others. Required.
	APIAddr string
	// Resources are the host's total resources, published to the others.
	// Names must not contain ',' or '='; amounts must be finite and >= 0.
	Resources map[string]float64
	// EncryptKey is the AES key gossip is encrypted with: nil for none, or
	// 16, 24 or 32 bytes (see ParseKey). Every member needs the same key.
	// The key both encrypts and authenticates gossip: only members holding
	// it can join or publish tags. New requires one unless the member binds
	// and advertises loopback addresses only (ErrKeyRequired).
	EncryptKey []byte
	// SnapshotPath is a file where Serf records the members it knows; ""
	// for none. A member restarted after a crash with the same path rejoins
	// them on its own. After a Leave it does not.
	SnapshotPath string
	// Timings are the gossip intervals; LANTimings unless testing.
	Timings Timings
	// Logger receives Serf's and memberlist's logs; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns LAN timings on Serf's usual port, all interfaces.
// NodeName and APIAddr are left to fill in.
func DefaultConfig() Config {
	return Config{BindAddr: "0.0.0.0:7946", Timings: LANTimings()}
}

// endpoint is a parsed "ip:port".
type endpoint struct {
	ip   string
	port int
}

// parseEndpoint parses "ip:port": memberlist binds and advertises IP
// addresses, not host names.
func parseEndpoint(field, s string) (endpoint, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return endpoint{}, fmt.Errorf("%w: %s %q: %v", ErrInvalidConfig, field, s, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return endpoint{}, fmt.Errorf("%w: %s %q: host must be an IP address", ErrInvalidConfig, field, s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return endpoint{}, fmt.Errorf("%w: %s %q: bad port", ErrInvalidConfig, field, s)
	}
	return endpoint{ip: ip.String(), port: int(p)}, nil
}

// checked is a validated Config, with its addresses parsed and its tags
// encoded.
type checked struct {
	bind, advertise endpoint // advertise.ip "" = the bind address
	tags            map[string]string
	logger          *slog.Logger
}

// check validates cfg once, for New and MemoryNetwork.Member alike, so that
// the twin refuses exactly what the real one refuses.
func (cfg *Config) check() (checked, error) {
	var c checked
	if cfg.NodeName == "" {
		return c, fmt.Errorf("%w: NodeName is required", ErrInvalidConfig)
	}
	if len(cfg.NodeName) > 128 || strings.ContainsFunc(cfg.NodeName, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return c, fmt.Errorf("%w: NodeName %q must be at most 128 characters without spaces or control characters", ErrInvalidConfig, cfg.NodeName)
	}
	var err error
	if c.bind, err = parseEndpoint("BindAddr", cfg.BindAddr); err != nil {
		return c, err
	}
	if cfg.AdvertiseAddr != "" {
		if c.advertise, err = parseEndpoint("AdvertiseAddr", cfg.AdvertiseAddr); err != nil {
			return c, err
		}
		if c.advertise.port != 0 && c.bind.port == 0 {
			return c, fmt.Errorf("%w: AdvertiseAddr %q has a port but BindAddr %q picks one", ErrInvalidConfig, cfg.AdvertiseAddr, cfg.BindAddr)
		}
	}
	if _, _, err := net.SplitHostPort(cfg.APIAddr); err != nil {
		return c, fmt.Errorf("%w: APIAddr %q must be host:port", ErrInvalidConfig, cfg.APIAddr)
	}
	if err := validateResources(cfg.Resources); err != nil {
		return c, err
	}
	switch len(cfg.EncryptKey) {
	case 0, 16, 24, 32:
	default:
		return c, fmt.Errorf("%w: EncryptKey must be 16, 24 or 32 bytes, got %d", ErrInvalidConfig, len(cfg.EncryptKey))
	}
	if err := cfg.Timings.validate(); err != nil {
		return c, err
	}
	if c.tags, err = makeTags(cfg.APIAddr, cfg.Resources); err != nil {
		return c, err
	}
	c.logger = cfg.Logger
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// validateResources checks resources against what the tag encoding can
// carry and what a peer will accept (see decodeResources).
func validateResources(res map[string]float64) error {
	for name, v := range res {
		if name == "" || strings.ContainsAny(name, ",=") {
			return fmt.Errorf("%w: resource name %q must be non-empty without ',' or '='", ErrInvalidConfig, name)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return fmt.Errorf("%w: resource %s = %v must be finite and >= 0", ErrInvalidConfig, name, v)
		}
	}
	return nil
}

// ParseKey decodes an encryption key given as standard base64 (what
// GenerateKey and `serf keygen` print), for a --encrypt flag.
func ParseKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%w: encryption key is not standard base64: %v", ErrInvalidConfig, err)
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	default:
		return nil, fmt.Errorf("%w: encryption key must decode to 16, 24 or 32 bytes, got %d", ErrInvalidConfig, len(key))
	}
}

// GenerateKey returns a new random 32-byte key (AES-256) in standard
// base64, for ParseKey.
func GenerateKey() string {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (it crashes the program instead)
	return base64.StdEncoding.EncodeToString(key)
}
