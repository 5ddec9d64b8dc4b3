package gossip

import (
	"errors"
	"log/slog"
	"math"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSerfSnapshotRejoin restarts a crashed member under the same name on
// a new port: with its snapshot it finds the cluster again without Join.
func TestSerfSnapshotRejoin(t *testing.T) {
	t.Parallel()
	c := serfCluster{}
	a := mustStart(t, c, c.config(t, "a"))
	b := mustStart(t, c, c.config(t, "b"))
	cfg := c.config(t, "c")
	cfg.SnapshotPath = filepath.Join(t.TempDir(), "serf.snapshot")
	first := mustStart(t, c, cfg)
	join(t, b, a)
	join(t, first, a)
	for _, m := range []Membership{a, b} {
		eventually(t, waitFor, sees(m, first.Local()))
	}
	eventually(t, waitFor, sees(first, b.Local()))
	old := first.Local()
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The others must have given up on the old address before another may
	// claim the name, or the guard rightly calls it a duplicate.
	for _, m := range []Membership{a, b} {
		eventually(t, waitFor, sees(m, with(old, StatusFailed)))
	}

	// Hold the old port (gossip binds UDP and TCP on one port) so the
	// kernel cannot hand it out again: the test is about a new address.
	if hold, err := net.ListenPacket("udp", old.GossipAddr); err == nil {
		defer hold.Close()
	} else {
		t.Logf("could not hold the old port: %v", err)
	}
	second := mustStart(t, c, cfg)
	now := second.Local()
	if now.GossipAddr == old.GossipAddr {
		t.Fatalf("restarted on the same address %s", now.GossipAddr)
	}
	for _, m := range []Membership{a, b} {
		eventually(t, waitFor, sees(m, now))
		waitEvent(t, m, EventJoin, "c")
	}
	eventually(t, waitFor, sees(second, a.Local()))
	eventually(t, waitFor, sees(second, b.Local()))
}

// TestSerfLeaveSnapshotStaysOut checks that a member that left does not
// rejoin on restart: a host stopped on purpose stays stopped.
func TestSerfLeaveSnapshotStaysOut(t *testing.T) {
	t.Parallel()
	c := serfCluster{}
	a := mustStart(t, c, c.config(t, "a"))
	cfg := c.config(t, "b")
	cfg.SnapshotPath = filepath.Join(t.TempDir(), "serf.snapshot")
	first := mustStart(t, c, cfg)
	join(t, first, a)
	eventually(t, waitFor, sees(a, first.Local()))
	if err := first.Leave(t.Context()); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	eventually(t, waitFor, sees(a, with(first.Local(), StatusLeft)))

	second := mustStart(t, c, cfg)
	// Give a rejoin every chance to happen (several reconnect intervals).
	time.Sleep(time.Second)
	if got := second.Members(); len(got) != 1 {
		t.Errorf("restarted after a leave, it knows %s", names(got))
	}
}

func TestNewInvalidConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(*Config)
		want   error
	}{
		{"no name", func(c *Config) { c.NodeName = "" }, ErrInvalidConfig},
		{"name with space", func(c *Config) { c.NodeName = "a b" }, ErrInvalidConfig},
		{"bind host name", func(c *Config) { c.BindAddr = "localhost:0" }, ErrInvalidConfig},
		{"bind without port", func(c *Config) { c.BindAddr = "127.0.0.1" }, ErrInvalidConfig},
		{"bind bad port", func(c *Config) { c.BindAddr = "127.0.0.1:70000" }, ErrInvalidConfig},
		{"advertise port with picked bind port", func(c *Config) { c.AdvertiseAddr = "10.0.0.1:7946" }, ErrInvalidConfig},
		{"no API address", func(c *Config) { c.APIAddr = "" }, ErrInvalidConfig},
		{"resource name with comma", func(c *Config) { c.Resources = map[string]float64{"a,b": 1} }, ErrInvalidConfig},
		{"negative resource", func(c *Config) { c.Resources = map[string]float64{"CPU": -1} }, ErrInvalidConfig},
		{"NaN resource", func(c *Config) { c.Resources = map[string]float64{"CPU": math.NaN()} }, ErrInvalidConfig},
		{"short key", func(c *Config) { c.EncryptKey = make([]byte, 10) }, ErrInvalidConfig},
		{"zero probe interval", func(c *Config) { c.Timings.ProbeInterval = 0 }, ErrInvalidConfig},
		{"probe timeout above interval", func(c *Config) { c.Timings.ProbeTimeout = time.Second }, ErrInvalidConfig},
		{"zero suspicion", func(c *Config) { c.Timings.SuspicionMult = 0 }, ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig(t, "x")
			tt.modify(&cfg)
			for _, im := range impls {
				if _, err := im.newCluster(t).start(t, cfg); !errors.Is(err, tt.want) {
					t.Errorf("%s: err = %v, want %v", im.name, err, tt.want)
				}
			}
		})
	}
}

func TestParseKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		wantLen int // 0: an error
	}{
		{GenerateKey(), 32},
		{"AAAAAAAAAAAAAAAAAAAAAA==", 16},
		{"  AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA  ", 24},
		{"AAAA", 0},
		{"not base64!", 0},
		{"", 0},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			key, err := ParseKey(tt.in)
			if tt.wantLen == 0 {
				if !errors.Is(err, ErrInvalidConfig) {
					t.Errorf("ParseKey(%q) = %d bytes, %v; want ErrInvalidConfig", tt.in, len(key), err)
				}
				return
			}
			if err != nil || len(key) != tt.wantLen {
				t.Errorf("ParseKey(%q) = %d bytes, %v; want %d bytes", tt.in, len(key), err, tt.wantLen)
			}
		})
	}
	if GenerateKey() == GenerateKey() {
		t.Error("GenerateKey repeats itself")
	}
}

func TestResourcesTag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		res  map[string]float64
		want string
	}{
		{"empty", nil, ""},
		{"sorted, %g", map[string]float64{"GPU": 1, "CPU": 8, "disk": 2.5, "tiny": 1e-7}, "CPU=8,GPU=1,disk=2.5,tiny=1e-07"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := encodeResources(tt.res)
			if got != tt.want {
				t.Errorf("encodeResources = %q, want %q", got, tt.want)
			}
			if back := decodeResources(got); !sameResources(back, tt.res) {
				t.Errorf("decodeResources(%q) = %v, want %v", got, back, tt.res)
			}
		})
	}
}

func TestDecodeResourcesJunk(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want map[string]float64
	}{
		{"", map[string]float64{}},
		{"CPU=8,,GPU", map[string]float64{"CPU": 8}},
		{"=3,CPU=x,GPU=1", map[string]float64{"GPU": 1}},
		{"CPU=NaN,GPU=+Inf,disk=-1,mem=1e3", map[string]float64{"mem": 1000}},
		{"CPU=1=2,GPU=2", map[string]float64{"GPU": 2}},
		{"\xff\xfe=1", map[string]float64{"\xff\xfe": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := decodeResources(tt.in); !sameResources(got, tt.want) {
				t.Errorf("decodeResources(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseLogLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		line      string
		level     slog.Level
		component string
		msg       string
	}{
		{"[DEBUG] memberlist: Stream connection from=1.2.3.4:5\n", slog.LevelDebug, "memberlist", "Stream connection from=1.2.3.4:5"},
		{"[INFO] serf: EventMemberJoin: a 127.0.0.1", slog.LevelInfo, "serf", "EventMemberJoin: a 127.0.0.1"},
		{"[WARN] serf: Shutdown without a Leave", slog.LevelWarn, "serf", "Shutdown without a Leave"},
		{"[ERR] memberlist: failed to receive: x", slog.LevelError, "memberlist", "failed to receive: x"},
		{"[ERROR] something", slog.LevelError, "", "something"},
		{"[TRACE] memberlist: x", slog.LevelDebug, "memberlist", "x"},
		{"Err: Could not set the deadline", slog.LevelInfo, "", "Err: Could not set the deadline"},
		{"[odd] serf: x", slog.LevelInfo, "", "[odd] serf: x"},
		{"[", slog.LevelInfo, "", "["},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			level, component, msg := parseLogLine(tt.line)
			if level != tt.level || component != tt.component || msg != tt.msg {
				t.Errorf("parseLogLine(%q) = %v, %q, %q; want %v, %q, %q", tt.line, level, component, msg, tt.level, tt.component, tt.msg)
			}
		})
	}
}

// TestLogAdapter checks that Serf's output reaches slog at the right level.
func TestLogAdapter(t *testing.T) {
	t.Parallel()
	var buf strings.Builder
	l := newLogLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l.Printf("[DEBUG] memberlist: noisy")
	l.Printf("[WARN] serf: careful %d", 1)
	out := buf.String()
	if strings.Contains(out, "noisy") {
		t.Errorf("debug line logged at info: %s", out)
	}
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, `msg="careful 1"`) || !strings.Contains(out, "component=serf") {
		t.Errorf("warning not logged as such: %s", out)
	}
}

func TestStrings(t *testing.T) {
	t.Parallel()
	for v, want := range map[Status]string{0: "unknown", StatusAlive: "alive", StatusLeaving: "leaving", StatusLeft: "left", StatusFailed: "failed", 99: "unknown"} {
		if got := v.String(); got != want {
			t.Errorf("Status(%d).String() = %q, want %q", int(v), got, want)
		}
	}
	for v, want := range map[EventKind]string{0: "unknown", EventJoin: "join", EventUpdate: "update", EventFailed: "failed", EventLeft: "left", EventReap: "reap"} {
		if got := v.String(); got != want {
			t.Errorf("EventKind(%d).String() = %q, want %q", int(v), got, want)
		}
	}
}

func TestEventQueueNeverBlocks(t *testing.T) {
	t.Parallel()
	q := newEventQueue()
	defer q.stop()
	const n = 10000
	for i := range n {
		q.push(Event{Kind: EventJoin, Member: Member{Name: string(rune('a' + i%26))}})
	}
	for i := range n {
		ev := <-q.out
		if want := string(rune('a' + i%26)); ev.Member.Name != want {
			t.Fatalf("event %d is %q, want %q", i, ev.Member.Name, want)
		}
	}
}
