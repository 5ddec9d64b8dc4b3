package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/gossip"
)

// Conn is what calling a member takes: its clients, and a context that
// ends when it leaves or fails.
type Conn struct {
	Name, Addr string
	Ctx        context.Context
	Task       rayhostv1connect.TaskServiceClient
	API        rayhostv1connect.PeerServiceClient
	raw        raw
}

func (p *peer) conn() Conn {
	return Conn{Name: p.name, Addr: p.addr, Ctx: p.ctx, Task: p.task, API: p.api, raw: p.raw}
}

// Reach returns how to call the member whose API is at addr, if it is
// alive and proven. This host's own address is no member.
func (c *Cluster) Reach(addr string) (Conn, error) {
	if c == nil {
		return Conn{}, fmt.Errorf("%s: %w (this host is in no cluster)", addr, ErrNotMember)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.byAddr[addr]
	switch {
	case p == nil || p.name == "":
		return Conn{}, fmt.Errorf("%s: %w", addr, ErrNotMember)
	case !p.proven:
		return Conn{}, fmt.Errorf("%s: %w (it has not proven it holds the cluster key)", addr, ErrNotMember)
	case p.ctx == nil || p.ctx.Err() != nil:
		return Conn{}, fmt.Errorf("%s (%s) is %s: %w", p.name, addr, p.status, ErrMemberDown)
	}
	return p.conn(), nil
}

// AwaitMember is Reach for an address a peer just named (a task's owner,
// an ObjectRef's): gossip may not have told this host of a host that just
// joined, so an unknown address gets a moment (Config.MemberGrace) to
// appear.
func (c *Cluster) AwaitMember(ctx context.Context, addr string) (Conn, error) {
	if c == nil {
		return c.Reach(addr)
	}
	deadline := time.Now().Add(c.cfg.MemberGrace)
	for {
		pc, err := c.Reach(addr)
		if err == nil || !errors.Is(err, ErrNotMember) || time.Now().After(deadline) {
			return pc, err
		}
		if !SleepCtx(ctx, 100*time.Millisecond) {
			return Conn{}, ctx.Err()
		}
	}
}

// SleepCtx waits d, or less if ctx ends first (then it reports false).
func SleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Named returns the member named name, if it is alive and proven.
func (c *Cluster) Named(name string) (Conn, bool) {
	if c == nil {
		return Conn{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.byName[name]; p != nil && p.proven && p.status == gossip.StatusAlive && p.ctx != nil {
		return p.conn(), true
	}
	return Conn{}, false
}

// Alive returns every member that is alive and proven.
func (c *Cluster) Alive() []Conn {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Conn
	for _, p := range c.byName {
		if p.status == gossip.StatusAlive && p.proven {
			out = append(out, p.conn())
		}
	}
	return out
}

// HostAlive reports whether the host at addr is this host or a proven
// member that is alive.
func (c *Cluster) HostAlive(addr string) bool {
	if c == nil {
		return false
	}
	if addr == c.cfg.Addr {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.byAddr[addr]
	return p != nil && p.name != "" && p.proven && p.status == gossip.StatusAlive
}

// PeerDown reports whether the host at addr is known to have failed or
// left, or is no (proven) member at all. This host is never down.
func (c *Cluster) PeerDown(addr string) bool {
	if c == nil || addr == c.cfg.Addr {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.byAddr[addr]
	return p == nil || p.name == "" || !p.proven || p.status == gossip.StatusFailed || p.status == gossip.StatusLeft
}

// NodeName is the host ID of the member at addr: this host's for its own
// address, "" if it is unknown or unproven.
func (c *Cluster) NodeName(addr string) string {
	if c == nil {
		return ""
	}
	if addr == c.cfg.Addr {
		return c.cfg.ID
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.byAddr[addr]; p != nil && p.proven {
		return p.name
	}
	return ""
}
