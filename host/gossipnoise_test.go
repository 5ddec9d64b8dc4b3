package host_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/testutil"
)

// gossipLines is a slog.Handler that counts the records from Serf and
// memberlist (those with a component attribute).
type gossipLines struct {
	mu    sync.Mutex
	n     int
	first chan struct{}
	once  sync.Once
	attrs []slog.Attr
}

func (g *gossipLines) Enabled(context.Context, slog.Level) bool { return true }

func (g *gossipLines) Handle(_ context.Context, r slog.Record) error {
	gossip := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "component" {
			gossip = true
		}
		return true
	})
	if gossip && r.Level >= slog.LevelWarn {
		// Startup is logged at info and debug; garbage at warn and error.
		g.once.Do(func() { close(g.first) })
	}
	if gossip {
		g.mu.Lock()
		g.n++
		g.mu.Unlock()
	}
	return nil
}

func (g *gossipLines) WithAttrs([]slog.Attr) slog.Handler { return g }
func (g *gossipLines) WithGroup(string) slog.Handler      { return g }

func (g *gossipLines) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// TestGossipNoise: a burst of garbage UDP at the gossip port writes a
// bounded number of log lines, and the host goes on serving.
func TestGossipNoise(t *testing.T) {
	lines := &gossipLines{first: make(chan struct{})}
	hosts := testutil.StartCluster(t, 1, func(_ int, cfg *host.Config) {
		cfg.Logger = slog.New(lines)
	})
	h := hosts[0]
	c := client.New(h.Addr())
	mod := testutil.Register(t, c, guestPkg)
	before := lines.count()
	conn, err := net.Dial("udp", h.GossipAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const packets = 2000
	buf := make([]byte, 200)
	for i := range packets {
		_, _ = rand.Read(buf)
		if _, err := conn.Write(buf[:20+i%180]); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
	}
	select {
	case <-lines.first:
	case <-time.After(hangGuard):
		t.Fatal("the garbage was never logged")
	}
	stillServes(t, c, mod)
	const bound = 200
	n := lines.count() - before
	t.Logf("%d garbage packets: %d log lines from gossip", packets, n)
	if n >= bound {
		t.Fatalf("%d garbage packets wrote %d gossip log lines, want fewer than %d", packets, n, bound)
	}
}
