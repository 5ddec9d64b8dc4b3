package cluster

import (
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/rayhost/rayhost/gossip"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// watchMembers applies membership changes until Close.
func (c *Cluster) watchMembers() {
	m := c.cfg.Membership
	// Members already there are saved too: one that joined before this
	// goroutine ran is seen here first, and its join event changes
	// nothing (TestPeersFileRejoin read the file before it was written).
	for _, mem := range m.Members() {
		c.memberChanged(mem)
	}
	for {
		select {
		case ev := <-m.Events():
			c.memberChanged(ev.Member)
		case <-c.ctx.Done():
			return
		}
	}
}

// memberChanged brings the peer table and the known-peers file up to date
// with m and tells Placement; a member that became alive is
// asked for its proof at once.
func (c *Cluster) memberChanged(m gossip.Member) {
	if m.Name == c.cfg.ID {
		return
	}
	total, err := totalOf(m)
	if err != nil {
		c.log.Warn("a member advertises invalid resources", "member", m.Name, "err", err)
		return
	}
	if !c.cfg.Keyed && !loopbackAddr(m.APIAddr) {
		// Gossip without a key proves nothing about who sent it (gossip.New
		// allows that on loopback only): an address it names beyond this
		// machine is not called.
		c.log.Warn("ignoring a member that advertises an API address beyond loopback on a cluster without a gossip key", "member", m.Name, "address", m.APIAddr)
		return
	}
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
	// At once, and before anyone hears of the member: a host killed a
	// moment after a peer came back on a new address must still find it
	// when it restarts.
	c.savePeers()

	c.cfg.Placement.MemberChanged(m.Name, alive, proven, total, avail)
	if was != m.Status {
		c.log.Info("member changed", "member", m.Name, "address", m.APIAddr, "state", m.Status.String())
	}
	if probe {
		// Ask it for its proof now rather than at the next load report.
		c.wg.Go(func() { c.readLoad(p) })
	}
}

// totalOf is a member's advertised resources.
func totalOf(m gossip.Member) (scheduler.Resources, error) {
	return scheduler.Make(m.Resources["CPU"], m.Resources["GPU"], customOf(m.Resources))
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

// knownPeers reads the gossip addresses PeersFile recorded.
func (c *Cluster) knownPeers() []string {
	if c.cfg.PeersFile == "" {
		return nil
	}
	b, err := os.ReadFile(c.cfg.PeersFile)
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

// savePeers records the alive members' gossip addresses, if they changed.
func (c *Cluster) savePeers() {
	if c.cfg.PeersFile == "" {
		return
	}
	c.mu.Lock()
	var addrs []string
	for _, p := range c.byName {
		if p.status == gossip.StatusAlive && p.gossipAddr != "" {
			addrs = append(addrs, p.gossipAddr)
		}
	}
	c.mu.Unlock()
	if len(addrs) == 0 {
		return // keep what the last members were: a lone host rejoins them
	}
	slices.Sort(addrs)
	data := strings.Join(addrs, "\n") + "\n"
	if data == c.savedPeers {
		return
	}
	tmp := c.cfg.PeersFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err == nil && os.Rename(tmp, c.cfg.PeersFile) == nil {
		c.savedPeers = data
	}
}
