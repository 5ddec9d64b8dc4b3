package gossip

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor is the deadline for anything gossip has to spread or detect. It
// is a hang guard, generous on purpose: on a loaded machine detection is
// slow, and the tests assert that it happens, never how fast.
const waitFor = 2 * time.Minute

// testLogger returns a logger that reports through t until the test ends.
// Serf's goroutines can log after that (a Leave still waiting on its
// broadcast), when t.Log would panic, so the writer goes quiet then.
func testLogger(t testing.TB) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct {
	t       testing.TB
	mu      sync.Mutex
	stopped bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(string(bytes.TrimSpace(p)))
	}
	return len(p), nil
}

func (w *tWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

// eventually polls cond every 20 ms until it returns nil, and fails the
// test with cond's last error if that takes longer than timeout.
func eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitEvent reads m's events until one of kind about name arrives, and
// returns it. Other events are skipped.
func waitEvent(t testing.TB, m Membership, kind EventKind, name string) Event {
	t.Helper()
	timer := time.NewTimer(waitFor)
	defer timer.Stop()
	var seen []string
	for {
		select {
		case ev := <-m.Events():
			if ev.Kind == kind && ev.Member.Name == name {
				return ev
			}
			seen = append(seen, ev.Kind.String()+" "+ev.Member.Name)
		case <-timer.C:
			t.Fatalf("%s: no %s event for %s within %v; saw %v", m.Local().Name, kind, name, waitFor, seen)
		}
	}
}

// waitEvents waits for an event of kind about each of names, in any order.
func waitEvents(t testing.TB, m Membership, kind EventKind, names ...string) {
	t.Helper()
	want := make(map[string]bool)
	for _, n := range names {
		want[n] = true
	}
	timer := time.NewTimer(waitFor)
	defer timer.Stop()
	for len(want) > 0 {
		select {
		case ev := <-m.Events():
			if ev.Kind == kind {
				delete(want, ev.Member.Name)
			}
		case <-timer.C:
			t.Fatalf("%s: no %s event within %v for %v", m.Local().Name, kind, waitFor, want)
		}
	}
}

// memberNamed returns the member called name in ms.
func memberNamed(ms []Member, name string) (Member, bool) {
	for _, m := range ms {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// sees reports whether observer sees a member like want (by name, status,
// addresses and resources), as an error for eventually.
func sees(observer Membership, want Member) func() error {
	return func() error {
		got, ok := memberNamed(observer.Members(), want.Name)
		if !ok {
			return fmt.Errorf("%s does not know %s: %v", observer.Local().Name, want.Name, names(observer.Members()))
		}
		if got.Status != want.Status || got.APIAddr != want.APIAddr || got.GossipAddr != want.GossipAddr ||
			!sameResources(got.Resources, want.Resources) {
			return fmt.Errorf("%s sees %+v, want %+v", observer.Local().Name, got, want)
		}
		return nil
	}
}

func with(m Member, s Status) Member {
	m.Status = s
	return m
}

func names(ms []Member) string {
	var b strings.Builder
	for i, m := range ms {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s(%s)", m.Name, m.Status)
	}
	return b.String()
}

func sameResources(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// cluster starts members of one implementation; every member it starts is
// closed when the test ends.
type cluster interface {
	config(t testing.TB, name string) Config
	start(t testing.TB, cfg Config) (Membership, error)
}

// impl is an implementation of Membership under test.
type impl struct {
	name       string
	newCluster func(t testing.TB) cluster
}

var impls = []impl{
	{"serf", func(testing.TB) cluster { return serfCluster{} }},
	{"memory", func(testing.TB) cluster { return memCluster{NewMemoryNetwork()} }},
}

var apiPort atomic.Int32

// baseConfig is a loopback config with fast timings and a unique API
// address, for both implementations.
func baseConfig(t testing.TB, name string) Config {
	cfg := DefaultConfig()
	cfg.NodeName = name
	cfg.BindAddr = "127.0.0.1:0"
	cfg.APIAddr = fmt.Sprintf("127.0.0.1:%d", 20000+apiPort.Add(1))
	cfg.Resources = map[string]float64{"CPU": 4, "GPU": 1, "disk": 2.5}
	cfg.Timings = FastTimings()
	cfg.Logger = testLogger(t)
	return cfg
}

type serfCluster struct{}

func (serfCluster) config(t testing.TB, name string) Config { return baseConfig(t, name) }

func (serfCluster) start(t testing.TB, cfg Config) (Membership, error) {
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close %s: %v", cfg.NodeName, err)
		}
	})
	return s, nil
}

type memCluster struct{ net *MemoryNetwork }

func (memCluster) config(t testing.TB, name string) Config { return baseConfig(t, name) }

func (c memCluster) start(t testing.TB, cfg Config) (Membership, error) {
	m, err := c.net.Member(cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close %s: %v", cfg.NodeName, err)
		}
	})
	return m, nil
}

// mustStart starts a member from cfg or fails the test.
func mustStart(t testing.TB, c cluster, cfg Config) Membership {
	t.Helper()
	m, err := c.start(t, cfg)
	if err != nil {
		t.Fatalf("starting %s: %v", cfg.NodeName, err)
	}
	return m
}

// startJoined starts one member per name, joins each to the first, and
// waits until every member sees all of them alive.
func startJoined(t testing.TB, c cluster, names ...string) []Membership {
	t.Helper()
	ms := make([]Membership, len(names))
	for i, name := range names {
		ms[i] = mustStart(t, c, c.config(t, name))
		if i > 0 {
			join(t, ms[i], ms[0])
		}
	}
	for _, observer := range ms {
		for _, m := range ms {
			eventually(t, waitFor, sees(observer, m.Local()))
		}
	}
	return ms
}

// join joins m to seed or fails the test.
func join(t testing.TB, m, seed Membership) {
	t.Helper()
	n, err := m.Join(t.Context(), []string{seed.Local().GossipAddr})
	if err != nil || n != 1 {
		t.Fatalf("%s joining %s: n = %d, err = %v", m.Local().Name, seed.Local().Name, n, err)
	}
}
