package gossip

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// lineCounter is a slog.Handler that counts and keeps the records it gets.
type lineCounter struct {
	mu    sync.Mutex
	lines []slog.Record
}

func (c *lineCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *lineCounter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	c.lines = append(c.lines, r)
	c.mu.Unlock()
	return nil
}
func (c *lineCounter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *lineCounter) WithGroup(string) slog.Handler      { return c }

func (c *lineCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lines)
}

// TestLogRateLimit: a flood of one kind of line logs at most logKindBurst
// lines per window, and the next window reports how many were held back.
func TestLogRateLimit(t *testing.T) {
	t.Parallel()
	var lc lineCounter
	now := time.Unix(1000, 0)
	w := newLogWriter(slog.New(&lc), func() time.Time { return now })
	for i := range 10_000 {
		_, _ = w.Write([]byte("[ERR] memberlist: Failed to decode ping request: garbage " + strings.Repeat("x", i%50) + " from=1.2.3.4:5"))
	}
	if got := lc.count(); got != logKindBurst {
		t.Fatalf("10,000 lines of one kind in one window logged %d lines, want %d", got, logKindBurst)
	}
	// Distinct attacker-chosen kinds share the total budget.
	for i := range 10_000 {
		_, _ = w.Write([]byte("[WARN] memberlist: kind " + strings.Repeat("y", i%300)))
	}
	if got := lc.count(); got > logTotalBurst {
		t.Fatalf("distinct kinds logged %d lines in one window, want at most %d", got, logTotalBurst)
	}
	if len(w.kinds) > logMaxKinds+1 {
		t.Fatalf("%d kinds tracked, want at most %d", len(w.kinds), logMaxKinds+1)
	}
	now = now.Add(logWindow)
	before := lc.count()
	_, _ = w.Write([]byte("[ERR] memberlist: Failed to decode ping request: more"))
	lc.mu.Lock()
	got := lc.lines[before:]
	lc.mu.Unlock()
	if len(got) != 2 || got[0].Message != "suppressed similar log lines (rate limit)" {
		t.Fatalf("next window logged %d lines (%v), want a suppressed summary and the line", len(got), got)
	}
	var n int64
	got[0].Attrs(func(a slog.Attr) bool {
		if a.Key == "suppressed" {
			n = a.Value.Int64()
		}
		return true
	})
	if n != 10_000-logKindBurst {
		t.Fatalf("summary says %d suppressed, want %d", n, 10_000-logKindBurst)
	}
}

// TestKeyRequiredBeyondLoopback: a member that gossips on an address other
// machines can reach refuses to start without a key; loopback does not need
// one, and with a key any address is fine.
func TestKeyRequiredBeyondLoopback(t *testing.T) {
	t.Parallel()
	base := Config{NodeName: "n", APIAddr: "127.0.0.1:1", Timings: FastTimings()}
	for _, tc := range []struct {
		name, bind, advertise string
		key                   bool
		want                  error
	}{
		{"all interfaces", "0.0.0.0:0", "", false, ErrKeyRequired},
		{"loopback advertising beyond", "127.0.0.1:0", "10.1.2.3:0", false, ErrKeyRequired},
		{"loopback", "127.0.0.1:0", "", false, nil},
		{"all interfaces with a key", "0.0.0.0:0", "", true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			cfg.BindAddr, cfg.AdvertiseAddr = tc.bind, tc.advertise
			if tc.key {
				key, err := ParseKey(GenerateKey())
				if err != nil {
					t.Fatal(err)
				}
				cfg.EncryptKey = key
			}
			s, err := New(cfg)
			if s != nil {
				_ = s.Close()
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("New = %v, want %v", err, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), "keygen") {
				t.Errorf("the error does not say how to make a key: %v", err)
			}
		})
	}
}
