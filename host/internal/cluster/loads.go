package cluster

import (
	"context"
	"sync"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gossip"
	"github.com/rayhost/rayhost/host/internal/peerwire"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// readLoads reads each alive member's free resources every LoadInterval,
// so placement uses what is free now.
func (c *Cluster) readLoads() {
	tick := time.NewTicker(c.cfg.LoadInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-c.ctx.Done():
			return
		}
		c.mu.Lock()
		var ps []*peer
		for _, p := range c.byName {
			if p.status == gossip.StatusAlive {
				ps = append(ps, p)
			}
		}
		c.mu.Unlock()
		var wg sync.WaitGroup
		for _, p := range ps {
			wg.Go(func() { c.readLoad(p) })
		}
		wg.Wait()
	}
}

// warnOnce logs msg about p the first time one of its answers is refused.
func (c *Cluster) warnOnce(p *peer, msg string, args ...any) {
	c.mu.Lock()
	warn := !p.warned
	p.warned = true
	c.mu.Unlock()
	if warn {
		c.log.Error(msg, args...)
	}
}

// readLoad asks p for its free resources. Its answer must prove it holds
// the cluster key and speaks this peer protocol version: until one does,
// p gets no work.
func (c *Cluster) readLoad(p *peer) {
	c.mu.Lock()
	pctx, svc, name, addr, total := p.ctx, p.task, p.name, p.addr, p.total
	c.mu.Unlock()
	if pctx == nil {
		return
	}
	ctx, cancel := context.WithTimeout(pctx, c.cfg.LoadTimeout)
	defer cancel()
	res, err := svc.Health(ctx, connect.NewRequest(&rayhostv1.HealthRequest{}))
	if err != nil {
		c.cfg.Placement.Unreachable(name)
		if connect.CodeOf(err) == connect.CodeUnauthenticated {
			c.warnOnce(p, "a member refuses this host's credential: hosts of a cluster must share the gossip key (--encrypt), or on loopback without one the token (--token); it gets no work from here", "member", name, "address", addr)
		}
		return
	}
	if !c.cfg.Proven(addr, res.Header()) {
		// It took a call but cannot prove it holds the cluster key: a
		// stranger on the member list. It gets nothing from this host.
		c.cfg.Placement.Unreachable(name)
		c.warnOnce(p, "a member answers without proof that it holds the cluster key: it gets no work, module or object from here", "member", name, "address", addr)
		return
	}
	if err := peerwire.CheckVersion(res.Header(), "member "+name); err != nil {
		// It would refuse this host's calls, and this host could not read
		// its frames: it gets nothing from here.
		c.cfg.Placement.Unreachable(name)
		c.warnOnce(p, "a member speaks another peer protocol version: hosts of a cluster must run the same release; it gets no work, module or object from here", "member", name, "address", addr, "err", err)
		return
	}
	avail, err := resourcesFromProto(res.Msg.GetAvailable())
	if err != nil {
		return
	}
	c.mu.Lock()
	if p.addr != addr || p.ctx != pctx {
		c.mu.Unlock()
		return // it moved or reconnected meanwhile: the next report counts
	}
	p.avail = &avail
	first := !p.proven
	p.proven = true
	c.mu.Unlock()
	c.cfg.Placement.Loaded(name, total, avail, first)
}

func resourcesFromProto(r *rayhostv1.Resources) (scheduler.Resources, error) {
	return scheduler.Make(r.GetNumCpus(), r.GetNumGpus(), r.GetCustom())
}
