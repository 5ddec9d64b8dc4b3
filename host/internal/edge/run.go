package edge

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/internal/abi"
)

// Run runs a module's driver and streams its output, progress and result.
// A driver waits for a slot (driverGate); the client going away stops it.
func (e *Edge) Run(ctx context.Context, req *connect.Request[rayhostv1.RunRequest], stream *connect.ServerStream[rayhostv1.RunResponse]) error {
	mod, err := e.h.LookupModule(ctx, req.Msg.GetModule())
	if err != nil {
		return ToConnect(err)
	}
	if !mod.HasMain {
		return Invalid("module %s has no driver: register one with ray.Main", mod.Digest[:12])
	}
	// A driver holds a worker but no CPU: past MaxDrivers it waits for a
	// slot, so drivers never take the workers tasks need for their CPUs.
	release, err := e.drivers.acquire(ctx, &e.cfg, clientOf(req.Peer().Addr))
	if err != nil {
		return ToConnect(err)
	}
	j := NewJob()
	submitted := false
	defer func() {
		if !submitted {
			release()
			return
		}
		// The slot is free once the driver has ended, not as soon as its
		// caller left (a cancelled driver runs on until its worker stops).
		e.h.Go(func() {
			select {
			case <-j.Ended():
			case <-e.cfg.Done:
			}
			release()
		})
	}()
	var grants abi.Grants
	for _, mnt := range req.Msg.GetMounts() {
		grants.Mounts = append(grants.Mounts, abi.Mount{Host: mnt.GetHostPath(), Guest: mnt.GetGuestPath(), ReadOnly: mnt.GetReadOnly()})
	}
	for _, name := range slices.Sorted(maps.Keys(req.Msg.GetEnv())) {
		grants.Env = append(grants.Env, abi.KV{Name: name, Value: req.Msg.GetEnv()[name]})
	}
	start := time.Now()
	stop, err := e.h.RunDriver(ctx, mod, grants, j)
	if err != nil {
		return ToConnect(err)
	}
	submitted = true
	var tick <-chan time.Time
	var last *rayhostv1.RunProgress
	if req.Msg.GetProgress() {
		ticker := time.NewTicker(500 * time.Millisecond)
		defer ticker.Stop()
		tick = ticker.C
		last = &rayhostv1.RunProgress{}
	}
	for {
		evs, err := j.Next(ctx, tick)
		if err != nil {
			// The client went away: stop its driver.
			stop()
			return ToConnect(err)
		}
		if last != nil {
			// Counts go before the events: the last ones precede the result.
			if p := j.ProgressEvent(); !proto.Equal(p, last) {
				last = p
				evs = append([]*rayhostv1.RunResponse{{Event: &rayhostv1.RunResponse_Progress{Progress: p}}}, evs...)
			}
		}
		for _, ev := range evs {
			if r := ev.GetResult(); r != nil {
				r.DurationMs = time.Since(start).Milliseconds()
			}
			if err := stream.Send(ev); err != nil {
				stop()
				return err
			}
			if ev.GetResult() != nil {
				return nil
			}
		}
	}
}

// driverGate admits drivers: at most MaxDrivers at once on the host, and at
// most MaxDriversPerClient from one client (its IP address: the API token
// is shared, so the address is what tells clients apart). The others wait,
// in no particular order, until a driver ends or their caller gives up.
type driverGate struct {
	mu      sync.Mutex
	running int
	byPeer  map[string]int
	wake    chan struct{} // closed and replaced when a driver ends
}

// acquire waits for a slot for a driver of client and returns the function
// that frees it.
func (g *driverGate) acquire(ctx context.Context, cfg *Config, client string) (release func(), err error) {
	maxAll, maxPeer := cfg.MaxDrivers, cfg.MaxDriversPerClient
	logged := false
	for {
		g.mu.Lock()
		if g.byPeer == nil {
			g.byPeer, g.wake = map[string]int{}, make(chan struct{})
		}
		if g.running < maxAll && g.byPeer[client] < maxPeer {
			g.running++
			g.byPeer[client]++
			g.mu.Unlock()
			var once sync.Once
			return func() { once.Do(func() { g.release(client) }) }, nil
		}
		wake := g.wake
		g.mu.Unlock()
		if !logged {
			logged = true
			cfg.Log.Info("a driver waits for a slot", "client", client, "max_drivers", maxAll, "max_drivers_per_client", maxPeer)
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a driver slot (at most %d drivers run at once, %d per client; rayhost start --max-drivers, --max-drivers-per-client): %w", maxAll, maxPeer, ctx.Err())
		case <-cfg.Done:
			return nil, cfg.ErrClosed
		}
	}
}

func (g *driverGate) release(client string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.running--
	if g.byPeer[client]--; g.byPeer[client] <= 0 {
		delete(g.byPeer, client)
	}
	close(g.wake)
	g.wake = make(chan struct{})
}

// clientOf is the client part of a peer address: its IP.
func clientOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}
