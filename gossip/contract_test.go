package gossip

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestContract runs the behaviour the host relies on against every
// implementation: the twin must not drift from Serf.
func TestContract(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		run  func(t *testing.T, c cluster)
	}{
		{"ThreeJoin", testThreeJoin},
		{"CloseIsFailure", testCloseIsFailure},
		{"LeaveIsLeft", testLeaveIsLeft},
		{"UpdateResources", testUpdateResources},
		{"Encryption", testEncryption},
		{"TagsTooLarge", testTagsTooLarge},
		{"DuplicateName", testDuplicateName},
		{"JoinUnreachable", testJoinUnreachable},
		{"Closed", testClosed},
		{"Concurrent", testConcurrent},
	}
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			t.Parallel()
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					tt.run(t, im.newCluster(t))
				})
			}
		})
	}
}

func testThreeJoin(t *testing.T, c cluster) {
	ms := startJoined(t, c, "a", "b", "c")
	wantRes := c.config(t, "x").Resources
	apis := make(map[string]bool)
	for _, m := range ms {
		local := m.Local()
		if !strings.HasPrefix(local.APIAddr, "127.0.0.1:2") || apis[local.APIAddr] {
			t.Errorf("%s: APIAddr %q is not the configured one", local.Name, local.APIAddr)
		}
		apis[local.APIAddr] = true
		if !sameResources(local.Resources, wantRes) {
			t.Errorf("%s: Resources = %v, want %v", local.Name, local.Resources, wantRes)
		}
		if strings.HasSuffix(local.GossipAddr, ":0") {
			t.Errorf("%s: GossipAddr %s does not show the picked port", local.Name, local.GossipAddr)
		}
		got := m.Members()
		if len(got) != 3 || got[0].Name != "a" || got[1].Name != "b" || got[2].Name != "c" {
			t.Errorf("%s: Members = %s, want a, b, c alive", local.Name, names(got))
		}
	}
	// The joins were announced: c hears of a and b, which were there first.
	waitEvents(t, ms[2], EventJoin, "a", "b")
}

func testCloseIsFailure(t *testing.T, c cluster) {
	ms := startJoined(t, c, "a", "b", "c")
	gone := ms[2].Local()
	if err := ms[2].Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, m := range ms[:2] {
		ev := waitEvent(t, m, EventFailed, "c")
		if ev.Member.Status != StatusFailed {
			t.Errorf("%s: failed event has status %v", m.Local().Name, ev.Member.Status)
		}
		eventually(t, waitFor, sees(m, with(gone, StatusFailed)))
	}
}

func testLeaveIsLeft(t *testing.T, c cluster) {
	ms := startJoined(t, c, "a", "b", "c")
	gone := ms[2].Local()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	if err := ms[2].Leave(ctx); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	for _, m := range ms[:2] {
		waitEvent(t, m, EventLeft, "c")
		eventually(t, waitFor, sees(m, with(gone, StatusLeft)))
	}
}

func testUpdateResources(t *testing.T, c cluster) {
	ms := startJoined(t, c, "a", "b")
	res := map[string]float64{"CPU": 16, "GPU": 0, "tpu": 0.5}
	if err := ms[0].UpdateResources(res); err != nil {
		t.Fatalf("UpdateResources: %v", err)
	}
	want := ms[0].Local()
	if !sameResources(want.Resources, res) {
		t.Errorf("Local().Resources = %v, want %v", want.Resources, res)
	}
	ev := waitEvent(t, ms[1], EventUpdate, "a")
	if !sameResources(ev.Member.Resources, res) {
		t.Errorf("update event carries %v, want %v", ev.Member.Resources, res)
	}
	eventually(t, waitFor, sees(ms[1], want))

	if err := ms[0].UpdateResources(map[string]float64{"a,b": 1}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("UpdateResources with a bad name: err = %v, want ErrInvalidConfig", err)
	}
}

func testEncryption(t *testing.T, c cluster) {
	key1, key2 := mustKey(t, GenerateKey()), mustKey(t, GenerateKey())
	tests := []struct {
		name            string
		seedKey, ownKey []byte
		wantErr         error
	}{
		{"same key", key1, key1, nil},
		{"different keys", key1, key2, ErrEncryption},
		{"seed encrypts, joiner does not", key1, nil, ErrEncryption},
		{"joiner encrypts, seed does not", nil, key1, ErrEncryption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			seedCfg := c.config(t, "seed")
			seedCfg.EncryptKey = tt.seedKey
			seed := mustStart(t, c, seedCfg)
			cfg := c.config(t, "joiner")
			cfg.EncryptKey = tt.ownKey
			m := mustStart(t, c, cfg)

			ctx, cancel := context.WithTimeout(t.Context(), waitFor)
			defer cancel()
			start := time.Now()
			n, err := m.Join(ctx, []string{seed.Local().GossipAddr})
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("Join: n = %d, err = %v, want %v", n, err, tt.wantErr)
			}
			if err != nil {
				t.Logf("Join: %v after %v", err, time.Since(start))
				// Fail fast: no retrying until ctx ends.
				if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Join retried until its context ended: %v", err)
				}
				return
			}
			eventually(t, waitFor, sees(seed, m.Local()))
		})
	}
}

func mustKey(t testing.TB, s string) []byte {
	t.Helper()
	k, err := ParseKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testTagsTooLarge(t *testing.T, c cluster) {
	big := make(map[string]float64)
	for _, name := range strings.Fields("alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu") {
		big["accelerator-"+name] = 1234.5678
	}
	cfg := c.config(t, "big")
	cfg.Resources = big
	if _, err := c.start(t, cfg); !errors.Is(err, ErrTagsTooLarge) {
		t.Errorf("start with %d resources: err = %v, want ErrTagsTooLarge", len(big), err)
	}
	cfg = c.config(t, "long")
	cfg.APIAddr = strings.Repeat("x", 600) + ":80"
	if _, err := c.start(t, cfg); !errors.Is(err, ErrTagsTooLarge) {
		t.Errorf("start with a long APIAddr: err = %v, want ErrTagsTooLarge", err)
	}

	m := mustStart(t, c, c.config(t, "small"))
	if err := m.UpdateResources(big); !errors.Is(err, ErrTagsTooLarge) {
		t.Errorf("UpdateResources: err = %v, want ErrTagsTooLarge", err)
	}
	if got := m.Local().Resources; !sameResources(got, c.config(t, "x").Resources) {
		t.Errorf("resources after a refused update = %v", got)
	}
}

func testDuplicateName(t *testing.T, c cluster) {
	ms := startJoined(t, c, "a", "b")
	a, b := ms[0], ms[1]
	twin := mustStart(t, c, c.config(t, "a"))
	for _, seed := range []Membership{a, b} {
		ctx, cancel := context.WithTimeout(t.Context(), waitFor)
		n, err := twin.Join(ctx, []string{seed.Local().GossipAddr})
		cancel()
		if !errors.Is(err, ErrDuplicateName) {
			t.Fatalf("joining a twin of a through %s: n = %d, err = %v, want ErrDuplicateName", seed.Local().Name, n, err)
		}
		t.Logf("Join: %v", err)
	}
	if got := twin.Members(); len(got) != 1 {
		t.Errorf("the twin knows %s, want only itself", names(got))
	}
	// The original is untouched and still gossips.
	if err := a.UpdateResources(map[string]float64{"CPU": 1}); err != nil {
		t.Fatalf("UpdateResources on the original: %v", err)
	}
	want := a.Local()
	if want.Status != StatusAlive {
		t.Fatalf("the original's status is %v", want.Status)
	}
	eventually(t, waitFor, sees(b, want))
	eventually(t, waitFor, sees(a, b.Local()))
}

func testJoinUnreachable(t *testing.T, c cluster) {
	m := mustStart(t, c, c.config(t, "lonely"))
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := m.Join(ctx, []string{"127.0.0.1:1"})
		done <- result{n, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(waitFor):
		t.Fatalf("Join did not return %v after its 500ms context ended", waitFor)
	}
	t.Logf("Join returned after %v with a 500ms context", time.Since(start))
	if n, err := r.n, r.err; !errors.Is(err, ErrJoin) || !errors.Is(err, context.DeadlineExceeded) || n != 0 {
		t.Fatalf("Join: n = %d, err = %v, want ErrJoin wrapping the deadline", n, err)
	}
	if n, err := m.Join(ctx, nil); n != 0 || err != nil {
		t.Errorf("Join(no seeds) = %d, %v; want 0, nil", n, err)
	}
}

func testClosed(t *testing.T, c cluster) {
	ms := startJoined(t, c, "a", "b")
	m := ms[1]
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := m.Leave(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Leave after Close: %v, want ErrClosed", err)
	}
	if _, err := m.Join(t.Context(), []string{ms[0].Local().GossipAddr}); !errors.Is(err, ErrClosed) {
		t.Errorf("Join after Close: %v, want ErrClosed", err)
	}
	if err := m.UpdateResources(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("UpdateResources after Close: %v, want ErrClosed", err)
	}
	if m.Local().Name != "b" || len(m.Members()) == 0 {
		t.Errorf("Local and Members must keep answering after Close")
	}
}

// testConcurrent hammers one member from several goroutines while another
// reads its events, for the race detector; then closes it mid-traffic.
func testConcurrent(t *testing.T, c cluster) {
	ms := startJoined(t, c, "a", "b")
	a, b := ms[0], ms[1]
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 5 {
				if err := a.UpdateResources(map[string]float64{"CPU": float64(g*10 + i)}); err != nil {
					t.Errorf("UpdateResources: %v", err)
					return
				}
				_ = a.Members()
				_ = a.Local()
			}
		})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 5 {
			select {
			case <-b.Events():
			case <-time.After(waitFor):
				t.Errorf("b stopped receiving updates")
				return
			}
		}
	}()
	wg.Wait()
	<-done
	// Close while b still sees a alive and a's own queue is full of
	// undelivered updates: nothing may block or race.
	var closers sync.WaitGroup
	for range 3 {
		closers.Go(func() { _ = a.Close() })
	}
	closers.Wait()
	if err := a.UpdateResources(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("UpdateResources after Close: %v, want ErrClosed", err)
	}
}
