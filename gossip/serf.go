package gossip

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// joinRetryInterval is how long Join waits between rounds of attempts.
const joinRetryInterval = 200 * time.Millisecond

// serfEventBuffer is the capacity of the channel Serf sends events on. It
// only has to absorb bursts until readEvents moves them to the unbounded
// queue.
const serfEventBuffer = 1024

// Serf is a Membership backed by HashiCorp Serf. Make one with New.
type Serf struct {
	serf   *serf.Serf
	guard  *nameGuard
	events *eventQueue
	log    *slog.Logger
	api    string

	stopRead chan struct{} // closed after shutdown: readEvents returns
	readDone chan struct{} // closed when readEvents has returned

	// tagsMu serialises UpdateResources: serf.SetTags writes its config
	// without a lock.
	tagsMu sync.Mutex

	mu       sync.Mutex
	closed   bool  // Leave or Close was called
	closeErr error // what the shutdown returned
	shutOnce sync.Once
}

var _ Membership = (*Serf)(nil)

// New validates cfg, starts a Serf member (it listens at once) and returns
// it, alone until Join or, with a snapshot, until it rejoins the members it
// knew.
func New(cfg Config) (*Serf, error) {
	c, err := cfg.check()
	if err != nil {
		return nil, err
	}
	if len(cfg.EncryptKey) == 0 && !(isLoopback(c.bind.ip) && (c.advertise.ip == "" || isLoopback(c.advertise.ip))) {
		return nil, fmt.Errorf("%w: gossip at %s can be reached from other machines, and without a key anyone who reaches it joins the cluster: make a key with GenerateKey (`rayhost keygen`) and give the same one to every member (--encrypt)", ErrKeyRequired, cfg.BindAddr)
	}
	// serf.DefaultConfig panics when the host name is unreadable: fail
	// here instead.
	if _, err := os.Hostname(); err != nil {
		return nil, fmt.Errorf("gossip: reading the host name for Serf's defaults: %w", err)
	}
	logLogger := newLogLogger(c.logger)
	t := cfg.Timings

	mc := memberlist.DefaultLANConfig()
	mc.BindAddr, mc.BindPort = c.bind.ip, c.bind.port
	mc.AdvertiseAddr, mc.AdvertisePort = c.advertise.ip, c.advertise.port
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = c.bind.port // memberlist replaces both when it picks the port
	}
	if len(cfg.EncryptKey) > 0 {
		mc.SecretKey = slices.Clone(cfg.EncryptKey)
	}
	mc.ProbeInterval, mc.ProbeTimeout = t.ProbeInterval, t.ProbeTimeout
	mc.GossipInterval, mc.TCPTimeout = t.GossipInterval, t.TCPTimeout
	mc.PushPullInterval, mc.SuspicionMult = t.PushPullInterval, t.SuspicionMult
	mc.DeadNodeReclaimTime = t.DeadNodeReclaimTime
	if t.SuspicionMaxTimeoutMult > 0 {
		mc.SuspicionMaxTimeoutMult = t.SuspicionMaxTimeoutMult
	}
	mc.Logger, mc.LogOutput = logLogger, nil // memberlist refuses both
	guard := newNameGuard()
	// Serf only installs a merge delegate of its own when Config.Merge is
	// set, and its Member loses memberlist's dead/alive distinction, which
	// the guard needs: so the guard sits directly on memberlist.
	mc.Merge = guard

	sc := serf.DefaultConfig()
	sc.NodeName = cfg.NodeName
	sc.Tags = c.tags
	sc.MemberlistConfig = mc
	sc.Logger, sc.LogOutput = logLogger, nil
	sc.LeavePropagateDelay = t.LeavePropagateDelay
	sc.ReapInterval, sc.ReconnectInterval = t.ReapInterval, t.ReconnectInterval
	sc.ReconnectTimeout, sc.TombstoneTimeout = t.ReconnectTimeout, t.TombstoneTimeout
	sc.SnapshotPath = cfg.SnapshotPath
	sc.RejoinAfterLeave = false // a host that left on purpose stays out after a restart
	// Serf's conflict resolution asks the cluster to vote and shuts the
	// loser down; in a two-member cluster the vote ties and both quit. The
	// guard refuses a duplicate before it gets in, so a conflict that still
	// slips through (a race between two joins) is only logged.
	sc.EnableNameConflictResolution = false
	serfCh := make(chan serf.Event, serfEventBuffer)
	sc.EventCh = serfCh

	sf, err := serf.Create(sc)
	if err != nil {
		guard.start(nil)
		return nil, fmt.Errorf("gossip: starting serf at %s: %w", cfg.BindAddr, err)
	}
	guard.start(sf)
	s := &Serf{
		serf:     sf,
		guard:    guard,
		events:   newEventQueue(),
		log:      c.logger,
		api:      cfg.APIAddr,
		stopRead: make(chan struct{}),
		readDone: make(chan struct{}),
	}
	go s.readEvents(serfCh, sf.ShutdownCh())
	return s, nil
}

// readEvents drains Serf's event channel, as Serf requires, and queues one
// Event per member of each member event. User events and queries are not
// used by rayhost and are dropped.
func (s *Serf) readEvents(ch <-chan serf.Event, shutdown <-chan struct{}) {
	defer close(s.readDone)
	for {
		select {
		case e := <-ch:
			me, ok := e.(serf.MemberEvent)
			if !ok {
				continue
			}
			kind := eventKind(me.Type)
			if kind == 0 {
				continue
			}
			evs := make([]Event, 0, len(me.Members))
			for _, m := range me.Members {
				evs = append(evs, Event{Kind: kind, Member: memberOf(m)})
			}
			s.events.push(evs...)
		case <-shutdown:
			return
		case <-s.stopRead:
			return
		}
	}
}

func eventKind(t serf.EventType) EventKind {
	switch t {
	case serf.EventMemberJoin:
		return EventJoin
	case serf.EventMemberUpdate:
		return EventUpdate
	case serf.EventMemberFailed:
		return EventFailed
	case serf.EventMemberLeave:
		return EventLeft
	case serf.EventMemberReap:
		return EventReap
	default:
		return 0
	}
}

func memberOf(m serf.Member) Member {
	var status Status
	switch m.Status {
	case serf.StatusAlive:
		status = StatusAlive
	case serf.StatusLeaving:
		status = StatusLeaving
	case serf.StatusLeft:
		status = StatusLeft
	case serf.StatusFailed:
		status = StatusFailed
	}
	return Member{
		Name:       m.Name,
		APIAddr:    m.Tags[tagAPI],
		GossipAddr: net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))),
		Resources:  decodeResources(m.Tags[tagResources]),
		Status:     status,
	}
}

// Local returns this member.
func (s *Serf) Local() Member { return memberOf(s.serf.LocalMember()) }

// Members returns every member Serf knows, sorted by name.
func (s *Serf) Members() []Member {
	sm := s.serf.Members()
	out := make([]Member, 0, len(sm))
	for _, m := range sm {
		out = append(out, memberOf(m))
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Events returns the channel of membership changes.
func (s *Serf) Events() <-chan Event { return s.events.out }

func (s *Serf) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Join contacts seeds; see Membership.Join. One attempt can outlast ctx by
// up to Timings.TCPTimeout per unreachable seed, since memberlist's dial
// cannot be cancelled.
func (s *Serf) Join(ctx context.Context, seeds []string) (int, error) {
	if len(seeds) == 0 {
		return 0, nil
	}
	var lastErr error
	for {
		if s.isClosed() || s.serf.State() != serf.SerfAlive {
			return 0, ErrClosed
		}
		mark := s.guard.mark()
		n, err := s.serf.Join(seeds, true)
		if n > 0 {
			if err != nil {
				// The join worked; only the announcement of it failed, and
				// push/pull will spread us anyway.
				s.log.Warn("joined, but broadcasting the join failed", "err", err)
			}
			return n, nil
		}
		if err == nil {
			err = errors.New("no seed answered")
		}
		err = oneLine(err)
		if dup := s.guard.conflictSince(mark); dup != nil {
			return 0, dup
		}
		if isEncryptionError(err) {
			return 0, fmt.Errorf("%w: %v", ErrEncryption, err)
		}
		lastErr = err
		timer := time.NewTimer(joinRetryInterval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return 0, fmt.Errorf("%w (%w): %w", ErrJoin, ctx.Err(), lastErr)
		case <-timer.C:
		}
	}
}

// oneLine flattens memberlist's multierror ("1 error occurred:\n\t* ...")
// into one line per failed seed, joined by "; ", for logs and messages.
func oneLine(err error) error {
	multi, ok := err.(interface{ WrappedErrors() []error })
	if !ok {
		return err
	}
	var msgs []string
	for _, e := range multi.WrappedErrors() {
		msgs = append(msgs, e.Error())
	}
	if len(msgs) == 0 {
		return err
	}
	return errors.New(strings.Join(msgs, "; "))
}

// isLoopback reports whether ip (an address parseEndpoint accepted) is a
// loopback address.
func isLoopback(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && a.IsLoopback()
}

// isEncryptionError tells whether a join failed because the two sides do
// not share a key. memberlist flattens its errors into strings (fmt %v and
// a multierror), so matching the text is the only way; these are the
// messages of memberlist v0.7's readStream and decryptPayload, as they
// come back from either side of a push/pull:
//
//   - both encrypt, keys differ: "no installed keys could decrypt the
//     message" (our side cannot read the seed's error reply either);
//   - we encrypt, the seed does not: "encryption is configured but remote
//     state is not encrypted";
//   - the seed encrypts, we do not: "remote state is encrypted and
//     encryption is not configured".
//
// All three are detectable at Join, because a join is a TCP exchange whose
// failure comes back to the caller. What is not detectable: a mismatch
// after joining (say a peer restarted with another key) only shows as that
// peer failing plus memberlist errors in the log, because UDP gossip that
// cannot be decrypted is dropped silently on the receiving side; and the
// snapshot's automatic rejoin has no caller to report to, so it only logs.
func isEncryptionError(err error) bool {
	msg := strings.ToLower(err.Error())
	for _, s := range []string{
		"no installed keys could decrypt",
		"encryption is not configured",
		"remote state is not encrypted",
		"cannot decrypt",
		"too small to decrypt",
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// UpdateResources publishes new resource totals. It waits (up to Serf's
// broadcast timeout, 5 s) for the update to be sent to at least one peer.
func (s *Serf) UpdateResources(total map[string]float64) error {
	if err := validateResources(total); err != nil {
		return err
	}
	tags, err := makeTags(s.api, total)
	if err != nil {
		return err
	}
	s.tagsMu.Lock()
	defer s.tagsMu.Unlock()
	if s.isClosed() {
		return ErrClosed
	}
	if err := s.serf.SetTags(maps.Clone(tags)); err != nil {
		return fmt.Errorf("gossip: publishing resources: %w", err)
	}
	return nil
}

// Leave announces the leave, waits for it to spread (bounded by ctx) and
// shuts down.
func (s *Serf) Leave(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	s.mu.Unlock()

	done := make(chan error, 1)
	go func() { done <- s.serf.Leave() }()
	var err error
	select {
	case err = <-done:
		if err != nil {
			err = fmt.Errorf("gossip: leaving: %w", err)
		}
	case <-ctx.Done():
		// The leave goroutine ends by itself once Serf is shut down and its
		// broadcast timeout passes.
		err = fmt.Errorf("gossip: leaving: %w", ctx.Err())
	}
	return errors.Join(err, s.shutdown())
}

// Close shuts down without leaving: the others will see this member fail.
// It is idempotent, and a no-op after Leave.
func (s *Serf) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return s.shutdown()
}

// shutdown stops Serf, then the event reader and queue, once.
func (s *Serf) shutdown() error {
	s.shutOnce.Do(func() {
		err := s.serf.Shutdown()
		if err != nil {
			err = fmt.Errorf("gossip: shutting serf down: %w", err)
		}
		// Serf closes its shutdown channel only if memberlist shut down
		// cleanly: stopRead makes sure the reader ends either way.
		close(s.stopRead)
		<-s.readDone
		s.events.stop()
		s.mu.Lock()
		s.closeErr = err
		s.mu.Unlock()
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeErr
}

// nameGuard is a memberlist merge delegate that refuses a join which would
// put two alive members with the same name in one cluster.
//
// Left alone, memberlist keeps the first address it saw for a name and
// logs a conflict, and Serf's conflict resolution then shuts down whichever
// side loses a vote (in a cluster of two, both). The guard runs on both
// sides of a join's push/pull, before anything is merged: the joiner sees
// the seed's state and the seed sees the joiner's, and either refuses if a
// name is alive (or suspect) at one address in its own list and at another
// in the remote one. The joiner's refusal fails its Join, which the guard's
// conflict count turns into ErrDuplicateName; the seed's refusal only
// drops that push/pull, so the existing member never notices.
//
// A name whose holder is known failed or left is not a conflict: that is a
// host restarted on a new port, and memberlist lets it take the name back
// after Timings.DeadNodeReclaimTime. What the guard cannot see is a
// duplicate that is in neither list when its join happens: two hosts with
// the same name joining through different members at the same moment, both
// let in before gossip tells anyone of the other. Each member then keeps
// whichever address reached it first (memberlist refuses the other and
// logs "Conflicting address" at error level), and both hosts keep running,
// because Serf's vote is turned off.
type nameGuard struct {
	ready chan struct{} // closed by start
	serf  *serf.Serf

	mu        sync.Mutex
	conflicts int
	last      error
}

func newNameGuard() *nameGuard { return &nameGuard{ready: make(chan struct{})} }

// start hands the guard its Serf (nil if it was never created). A
// push/pull can arrive before serf.Create returns (the snapshot rejoin
// starts in Create, and the listener is open): it waits for this.
func (g *nameGuard) start(s *serf.Serf) {
	g.serf = s
	close(g.ready)
}

// NotifyMerge implements memberlist.MergeDelegate. The local side comes
// from Serf's member list, which is copied under Serf's lock: memberlist's
// own Members hands out pointers that it keeps writing to. memberlist calls
// this without holding its node lock, so taking Serf's lock here keeps the
// usual order (memberlist's, then Serf's).
func (g *nameGuard) NotifyMerge(peers []*memberlist.Node) error {
	<-g.ready
	if g.serf == nil {
		return nil
	}
	local := make(map[string]serf.Member)
	for _, m := range g.serf.Members() {
		if m.Status == serf.StatusAlive || m.Status == serf.StatusLeaving {
			local[m.Name] = m
		}
	}
	for _, p := range peers {
		if p.State != memberlist.StateAlive && p.State != memberlist.StateSuspect {
			continue
		}
		l, ok := local[p.Name]
		if !ok || (l.Addr.Equal(p.Addr) && l.Port == p.Port) {
			continue
		}
		err := fmt.Errorf("%w: %q is alive at %s in one cluster and at %s in the other",
			ErrDuplicateName, p.Name, net.JoinHostPort(l.Addr.String(), strconv.Itoa(int(l.Port))), hostPort(p))
		g.mu.Lock()
		g.conflicts++
		g.last = err
		g.mu.Unlock()
		return err
	}
	return nil
}

func hostPort(n *memberlist.Node) string {
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// mark returns the conflict count, for conflictSince.
func (g *nameGuard) mark() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.conflicts
}

// conflictSince returns the last conflict if there was one since mark.
// Joins run one at a time, but a seed-side refusal of someone else's join
// during our attempt counts too; Join only asks after an attempt in which
// no seed answered, which makes that mix-up unlikely and harmless (the
// cluster does have a duplicate name in flight).
func (g *nameGuard) conflictSince(mark int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conflicts == mark {
		return nil
	}
	return g.last
}
