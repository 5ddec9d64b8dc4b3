package cluster

import (
	"slices"
	"strings"

	"github.com/rayhost/rayhost/gossip"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// Member is one member as this host sees it: the placement input.
type Member struct {
	Name, APIAddr, GossipAddr string
	// State is gossip's (alive, failed, left, ...), or "unverified" for a
	// member alive in gossip that has not proven it holds the cluster key
	// (it gets no work).
	State string
	Total scheduler.Resources
	// Available is what it reported free last; nil before a report, or
	// when it is not alive.
	Available *scheduler.Resources
}

// Members lists the other members, sorted by name: every one gossip lists
// (failed and left ones until they are reaped), with what this host knows
// of their load.
func (c *Cluster) Members() []Member {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	avails := map[string]*scheduler.Resources{}
	unproven := map[string]bool{}
	for name, p := range c.byName {
		avails[name] = p.avail
		unproven[name] = !p.proven
	}
	c.mu.Unlock()
	var out []Member
	for _, m := range c.cfg.Membership.Members() {
		if m.Name == c.cfg.ID {
			continue
		}
		t, _ := totalOf(m)
		pm := Member{Name: m.Name, APIAddr: m.APIAddr, GossipAddr: m.GossipAddr, State: m.Status.String(), Total: t}
		if m.Status == gossip.StatusAlive && unproven[m.Name] {
			pm.State = "unverified"
		}
		if a := avails[m.Name]; a != nil && m.Status == gossip.StatusAlive {
			v := *a
			pm.Available = &v
		}
		out = append(out, pm)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}
