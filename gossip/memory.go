package gossip

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"
)

// MemoryNetwork connects in-memory members: the twin of a LAN of Serf
// members, for tests of code that depends on Membership. Gossip is instant
// and reliable: a change is seen by every member it reaches before the
// call that made it returns. Members are never reaped.
type MemoryNetwork struct {
	mu       sync.Mutex
	byAddr   map[string]*Memory // members not yet closed, by gossip address
	nextPort int
}

// NewMemoryNetwork returns an empty network.
func NewMemoryNetwork() *MemoryNetwork {
	return &MemoryNetwork{byAddr: make(map[string]*Memory), nextPort: 30000}
}

// Memory is an in-memory Membership on a MemoryNetwork.
type Memory struct {
	net    *MemoryNetwork
	events *eventQueue

	// Guarded by net.mu.
	self   Member
	key    []byte
	view   map[string]Member // the other members, as this one sees them
	failed bool              // cut off by Fail
	closed bool              // Leave or Close was called
}

var _ Membership = (*Memory)(nil)

// Member starts a member on the network, validating cfg as New does. Its
// gossip address is AdvertiseAddr, else BindAddr; port 0 gets a port of its
// own. Timings, SnapshotPath and Logger are not used.
func (n *MemoryNetwork) Member(cfg Config) (*Memory, error) {
	c, err := cfg.check()
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	ep := c.bind
	if c.advertise.ip != "" {
		ep.ip = c.advertise.ip
		if c.advertise.port != 0 {
			ep.port = c.advertise.port
		}
	}
	if ep.port == 0 {
		ep.port = n.nextPort
		n.nextPort++
	}
	addr := net.JoinHostPort(ep.ip, strconv.Itoa(ep.port))
	if n.byAddr[addr] != nil {
		return nil, fmt.Errorf("gossip: address %s is in use", addr)
	}
	m := &Memory{
		net:    n,
		events: newEventQueue(),
		self: Member{
			Name:       cfg.NodeName,
			APIAddr:    cfg.APIAddr,
			GossipAddr: addr,
			Resources:  maps.Clone(cfg.Resources),
			Status:     StatusAlive,
		},
		key:  slices.Clone(cfg.EncryptKey),
		view: make(map[string]Member),
	}
	if m.self.Resources == nil {
		m.self.Resources = make(map[string]float64)
	}
	n.byAddr[addr] = m
	m.events.push(Event{Kind: EventJoin, Member: m.self}) // Serf announces itself too
	return m, nil
}

// Fail cuts the named member off, as a crash or a partition would: the
// others see it fail and it sees them fail. It stays usable (Heal brings
// it back).
func (n *MemoryNetwork) Fail(name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	m := n.byNameLocked(name)
	if m == nil {
		return fmt.Errorf("gossip: no member named %q on the network", name)
	}
	if m.failed {
		return nil
	}
	m.failed = true
	n.setStatusLocked(m, StatusFailed, EventFailed)
	for peer, v := range m.view {
		if v.Status == StatusAlive || v.Status == StatusLeaving {
			v.Status = StatusFailed
			m.view[peer] = v
			m.events.push(Event{Kind: EventFailed, Member: v.clone()})
		}
	}
	return nil
}

// Heal reconnects a member cut off by Fail, as Serf's reconnect does after
// a partition: it and every member connected to it see each other join.
func (n *MemoryNetwork) Heal(name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	m := n.byNameLocked(name)
	if m == nil {
		return fmt.Errorf("gossip: no member named %q on the network", name)
	}
	if !m.failed {
		return nil
	}
	m.failed = false
	// Everyone that knew m (and everyone m knew) reconnects, whatever
	// status they last saw.
	group := []*Memory{m}
	for _, o := range n.byAddr {
		if o == m || o.failed {
			continue
		}
		v, theyKnow := o.view[m.self.Name]
		w, weKnow := m.view[o.self.Name]
		if (theyKnow && v.GossipAddr == m.self.GossipAddr) || (weKnow && w.GossipAddr == o.self.GossipAddr) {
			group = append(group, o)
		}
	}
	n.connectLocked(n.closureLocked(group))
	return nil
}

func (n *MemoryNetwork) byNameLocked(name string) *Memory {
	for _, m := range n.byAddr {
		if m.self.Name == name {
			return m
		}
	}
	return nil
}

// reaches tells whether o currently sees peer as a live member (net.mu
// held).
func reaches(o, peer *Memory) bool {
	v, ok := o.view[peer.self.Name]
	return ok && v.GossipAddr == peer.self.GossipAddr && (v.Status == StatusAlive || v.Status == StatusLeaving)
}

// groupLocked returns m and the members it sees alive: its side of a join.
func (n *MemoryNetwork) groupLocked(m *Memory) []*Memory {
	group := []*Memory{m}
	for _, v := range m.view {
		if o := n.byAddr[v.GossipAddr]; o != nil && !o.failed && o != m && reaches(m, o) {
			group = append(group, o)
		}
	}
	return group
}

// closureLocked extends group with everyone its members see alive, until
// nothing is added: gossip spreads through the whole connected cluster.
func (n *MemoryNetwork) closureLocked(group []*Memory) []*Memory {
	in := make(map[*Memory]bool)
	for _, m := range group {
		in[m] = true
	}
	for i := 0; i < len(group); i++ {
		for _, o := range n.groupLocked(group[i]) {
			if !in[o] {
				in[o] = true
				group = append(group, o)
			}
		}
	}
	return group
}

// connectLocked makes every member of group see every other one alive,
// sending a join event where that is news.
func (n *MemoryNetwork) connectLocked(group []*Memory) {
	for _, a := range group {
		for _, b := range group {
			if a == b {
				continue
			}
			if v, ok := a.view[b.self.Name]; ok && v.Status == StatusAlive && v.GossipAddr == b.self.GossipAddr {
				continue
			}
			a.view[b.self.Name] = b.self.clone()
			a.events.push(Event{Kind: EventJoin, Member: b.self.clone()})
		}
	}
}

// setStatusLocked tells every member that sees m alive that m is now
// status, with an event of kind.
func (n *MemoryNetwork) setStatusLocked(m *Memory, status Status, kind EventKind) {
	for _, o := range n.byAddr {
		if o == m || o.failed || !reaches(o, m) {
			continue
		}
		v := m.self.clone()
		v.Status = status
		o.view[m.self.Name] = v
		o.events.push(Event{Kind: kind, Member: v.clone()})
	}
}

func (m Member) clone() Member {
	m.Resources = maps.Clone(m.Resources)
	return m
}

// Local returns this member.
func (m *Memory) Local() Member {
	m.net.mu.Lock()
	defer m.net.mu.Unlock()
	return m.self.clone()
}

// Members returns this member and those it knows, sorted by name.
func (m *Memory) Members() []Member {
	m.net.mu.Lock()
	defer m.net.mu.Unlock()
	out := []Member{m.self.clone()}
	for _, v := range m.view {
		out = append(out, v.clone())
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Events returns the channel of membership changes.
func (m *Memory) Events() <-chan Event { return m.events.out }

// Join connects this member's cluster with each seed's, as Serf's join
// does, with the same errors.
func (m *Memory) Join(ctx context.Context, seeds []string) (int, error) {
	if len(seeds) == 0 {
		return 0, nil
	}
	for {
		n, err := m.joinOnce(seeds)
		if n > 0 {
			return n, nil
		}
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrEncryption) || errors.Is(err, ErrDuplicateName) {
			return 0, err
		}
		timer := time.NewTimer(joinRetryInterval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return 0, fmt.Errorf("%w (%w): %w", ErrJoin, ctx.Err(), err)
		case <-timer.C:
		}
	}
}

func (m *Memory) joinOnce(seeds []string) (int, error) {
	nw := m.net
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	answered := 0
	var lastErr error
	for _, seed := range seeds {
		s := nw.byAddr[seed]
		if s == nil || s.failed || m.failed {
			lastErr = fmt.Errorf("gossip: seed %s did not answer", seed)
			continue
		}
		if !bytes.Equal(m.key, s.key) {
			return 0, fmt.Errorf("%w: seed %s", ErrEncryption, seed)
		}
		ours, theirs := nw.groupLocked(m), nw.groupLocked(s)
		for _, a := range ours {
			for _, b := range theirs {
				if a.self.Name == b.self.Name && a != b {
					return 0, fmt.Errorf("%w: %q is alive at %s in one cluster and at %s in the other",
						ErrDuplicateName, a.self.Name, b.self.GossipAddr, a.self.GossipAddr)
				}
			}
		}
		nw.connectLocked(append(ours, theirs...))
		answered++
	}
	return answered, lastErr
}

// UpdateResources publishes new totals to everyone that sees this member.
func (m *Memory) UpdateResources(total map[string]float64) error {
	if err := validateResources(total); err != nil {
		return err
	}
	nw := m.net
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if _, err := makeTags(m.self.APIAddr, total); err != nil {
		return err
	}
	m.self.Resources = maps.Clone(total)
	if m.self.Resources == nil {
		m.self.Resources = make(map[string]float64)
	}
	m.events.push(Event{Kind: EventUpdate, Member: m.self.clone()})
	if !m.failed {
		nw.setStatusLocked(m, StatusAlive, EventUpdate)
	}
	return nil
}

// Leave tells the others this member left, and shuts it down.
func (m *Memory) Leave(ctx context.Context) error {
	return m.shutdown(StatusLeft, EventLeft, ErrClosed)
}

// Close shuts down without leaving: the others see this member fail.
func (m *Memory) Close() error {
	return m.shutdown(StatusFailed, EventFailed, nil)
}

// shutdown takes m off the network, telling the others it is status. It
// returns again for a member already shut down.
func (m *Memory) shutdown(status Status, kind EventKind, again error) error {
	nw := m.net
	nw.mu.Lock()
	if m.closed {
		nw.mu.Unlock()
		return again
	}
	m.closed = true
	if !m.failed {
		nw.setStatusLocked(m, status, kind)
	}
	m.self.Status = status
	delete(nw.byAddr, m.self.GossipAddr)
	nw.mu.Unlock()
	m.events.stop()
	return nil
}
