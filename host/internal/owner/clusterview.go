package owner

import (
	"context"
	"fmt"
	"time"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/host/internal/cluster"
	"github.com/rayhost/rayhost/host/internal/lifecycle"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// The owner's view of the cluster (host/internal/cluster): calling
// members, and what membership changes do to placement.
// conn is what calling a member takes: its clients, and a context that ends
// when it leaves or fails.
type conn struct {
	ctx  context.Context
	task rayhostv1connect.TaskServiceClient
	api  rayhostv1connect.PeerServiceClient
	raw  cluster.Conn // its raw routes (Get)
}

func connOf(c cluster.Conn) conn { return conn{ctx: c.Ctx, task: c.Task, api: c.API, raw: c} }

// errNotMember: an address gossip does not list (cluster.ErrNotMember).
var errNotMember = cluster.ErrNotMember

// reach returns how to call the member whose API is at addr, if it is
// alive.
func (pr *remoteRole) reach(addr string) (conn, error) {
	h := pr.o
	c, err := h.cluster.Reach(addr)
	return connOf(c), err
}

// awaitMember is reach for an address a peer just named: an unknown one
// gets a moment to appear in gossip.
func (pr *remoteRole) awaitMember(ctx context.Context, addr string) (conn, error) {
	h := pr.o
	c, err := h.cluster.AwaitMember(ctx, addr)
	return connOf(c), err
}

// sleepCtx waits d, or less if ctx ends first (then it reports false).
func sleepCtx(ctx context.Context, d time.Duration) bool { return cluster.SleepCtx(ctx, d) }

// isMember reports whether addr is this host or a member gossip lists.
func (pr *remoteRole) isMember(addr string) bool {
	h := pr.o
	return addr == h.addr || h.cluster.NodeName(addr) != ""
}

// hostAlive reports whether the host at addr is this host or a member
// that is alive.
func (pr *remoteRole) hostAlive(addr string) bool {
	h := pr.o
	return addr == h.addr || h.cluster.HostAlive(addr)
}

// peerDown reports whether the host at addr is known to have failed or
// left, or is no member at all.
func (pr *remoteRole) peerDown(addr string) bool { h := pr.o; return h.cluster.PeerDown(addr) }

// nodeName is the host ID of the member at addr ("" if unknown).
func (pr *remoteRole) nodeName(addr string) string {
	h := pr.o
	if addr == h.addr {
		return h.cfg.ID
	}
	return h.cluster.NodeName(addr)
}

type hostPlacement struct{ h *Owner }

// MemberChanged places on a member that is alive and proven, and takes
// one that left or failed out (failing the tasks only it could run).
func (p hostPlacement) MemberChanged(name string, alive, proven bool, total, avail scheduler.Resources) {
	h := p.h
	h.mu.Lock()
	var later []func()
	switch {
	case alive && proven:
		h.sched.SetNode(name, total, avail)
	case alive:
		// Placed on once it proves it holds the cluster key (Loaded).
	default:
		// What only that host could run waits for one that fits (Ray keeps
		// infeasible work pending), and says why.
		later = append(later, func() { h.brw.hostGone(name) }) // its borrows die with it
		why := fmt.Sprintf("host %s, the only one that could run it, is gone", name)
		for _, it := range h.sched.RemoveNode(name) {
			t := it.Value
			if it.Place.Hard() {
				// Pinned to the host that is gone: it fails, as in Ray.
				later = append(later, h.stepLocked(t, lifecycle.Infeasible{Why: why})...)
				continue
			}
			later = append(later, h.stepLocked(t, lifecycle.Infeasible{Why: why, Wait: true})...)
			later = append(later, func() { h.disp.warnInfeasible(t, why) })
		}
	}
	starts := h.disp.dispatchLocked()
	h.mu.Unlock()
	run(later)
	h.disp.start(starts)
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
	starts := h.disp.dispatchLocked()
	h.mu.Unlock()
	h.disp.start(starts)
}

// Unreachable takes a member that did not answer out of placement until
// its next load report.
func (p hostPlacement) Unreachable(name string) { p.h.rem.unreachable(name) }

// unreachable takes a peer that did not answer out of placement until its
// next load report: a host that just died must not take (and fail) the
// retries of the tasks it was running before gossip declares it failed.
func (pr *remoteRole) unreachable(name string) {
	h := pr.o
	if name == "" {
		return
	}
	h.mu.Lock()
	h.sched.Block(name)
	h.mu.Unlock()
}

// clusterStatus lists the cluster's hosts as this one sees them.
// infeasibleDemand counts the queued tasks no member can run now, by
// resource shape, oldest shape first.
func (pr *remoteRole) infeasibleDemand() []*rayhostv1.Demand {
	h := pr.o
	h.mu.Lock()
	items := h.sched.Infeasible()
	h.mu.Unlock()
	var out []*rayhostv1.Demand
	byShape := map[string]*rayhostv1.Demand{}
	for _, it := range items {
		k := it.Req.String()
		d := byShape[k]
		if d == nil {
			d = &rayhostv1.Demand{Resources: resourcesProto(it.Req)}
			byShape[k] = d
			out = append(out, d)
		}
		d.Tasks++
	}
	return out
}

func (pr *remoteRole) clusterStatus() []*rayhostv1.Member {
	h := pr.o
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
