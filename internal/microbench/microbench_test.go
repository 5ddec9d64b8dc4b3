package microbench

import (
	"bytes"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rayhost/rayhost/internal/testutil"
)

// TestRunSmoke runs every metric very briefly: the command must keep
// working (its figures come from `rayhost microbenchmark`, not from here).
func TestRunSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several hosts")
	}
	var out bytes.Buffer
	cfg := DefaultConfig()
	cfg.GuestPkg = filepath.Join(testutil.RepoRoot(), "bench", "guest")
	cfg.QuicksortPkg = filepath.Join(testutil.RepoRoot(), "examples", "quicksort")
	cfg.Warmup, cfg.Runs, cfg.Duration = 10*time.Millisecond, 1, 100*time.Millisecond
	cfg.Out = &out
	cfg.WorkerCommand = []string{testutil.RayhostBinary(t), "worker"}
	ms, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log(out.String())
	want := []string{"single_client_tasks_sync", "single_client_tasks_async", "multi_client_tasks_async",
		"1_1_actor_calls_sync", "1_1_actor_calls_async", "single_client_get_calls", "single_client_put_calls",
		"single_client_put_gigabytes", "single_client_get_gigabytes", "single_client_tasks_and_get_batch", "single_client_wait_1k_refs",
		"bare wazero export call", "native Go: goroutine per call", "idle worker", "cold cache", "warm cache", "2 slots",
		"monte_carlo_pi", "quicksort", "tasks_on_peer_host", "pull_between_hosts",
		"host peak RSS", "worker peak RSS"}
	for _, w := range want {
		found := false
		for _, m := range ms {
			if strings.Contains(m.Name, w) && m.Mean > 0 {
				found = true
			}
		}
		if !found {
			t.Errorf("no figure for %q", w)
		}
	}
}

// TestSoak is issue 16's soak in the default test command, at a
// twentieth of `rayhost microbenchmark --soak` (whose figures are in
// docs/BENCHMARKS.md): 50,000 tasks with 1 KiB results and 500 puts of
// 1 MiB on a host process (built without -race) with a 256 MiB store
// quota, every ref dropped as the driver goes. Once the driver has ended
// the host holds no object and its store is back near its size at the
// start: within a value-log file (a sixteenth of the quota, never
// collected while it is written) and 4 MiB of Badger's own files.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a host process")
	}
	const quota = 256 << 20
	var out bytes.Buffer
	cfg := DefaultSoakConfig()
	cfg.GuestPkg = filepath.Join(testutil.RepoRoot(), "bench", "soak")
	cfg.Tasks, cfg.Puts, cfg.PutKiB = 50_000, 500, 1<<10
	cfg.Quota = strconv.Itoa(quota)
	// A hang guard: the store reclaims at least once a minute.
	cfg.Idle = 3 * time.Minute
	cfg.Settled = func(start, now SoakSample) bool {
		return now.Objects == 0 && now.Store <= start.Store+float64(quota/16+4<<20)/(1<<20)
	}
	cfg.Out = &out
	cfg.Exe = testutil.RayhostBinary(t)
	samples, err := RunSoak(t.Context(), cfg)
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	// start, ten progress lines, the driver's end, settled.
	if len(samples) != 13 || samples[10].Tasks != cfg.Tasks || samples[10].Puts != cfg.Puts {
		t.Fatalf("%d samples, the last progress at %+v", len(samples), samples[min(10, len(samples)-1)])
	}
	for i, s := range samples {
		if s.HostRSS <= 0 || s.HostAnon <= 0 || s.DataDir <= 0 || (i > 0 && s.HostHeap <= 0) {
			t.Fatalf("sample %q measured nothing: %+v", s.Label, s)
		}
	}
	if end := samples[12]; end.Freed < uint64(cfg.Tasks+cfg.Puts) {
		t.Fatalf("the host freed %d objects; the driver made at least %d", end.Freed, cfg.Tasks+cfg.Puts)
	}
}

// TestGCTrace: the live heap is the last collection's third figure; other
// lines, and lines split across writes, are taken as they come.
func TestGCTrace(t *testing.T) {
	g := newGCTrace()
	if g.Live() != -1 {
		t.Fatalf("live %v before any collection, want -1", g.Live())
	}
	for _, w := range []string{
		"some log line\n",
		"gc 1 @0.012s 2%: 0.010+1.1+0.004 ms clock, 0.021+0.3/0.8/0+0.009 ms cpu, 3->4->1 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P\n",
		"gc 2 @0.5s 1%: 0.01+2+0.01 ms clock, 0.02+0/1/0+0.02 ms cpu, 80->90->4",
		"2 MB, 84 MB goal, 0 MB stacks, 0 MB globals, 2 P (forced)\nscvg: nothing\n",
	} {
		if _, err := g.Write([]byte(w)); err != nil {
			t.Fatal(err)
		}
	}
	if g.Live() != 42 || g.gcs != 2 {
		t.Fatalf("live %v after %d collections, want 42 after 2", g.Live(), g.gcs)
	}
}

// TestOnlyUnknownMetric: --only with a name Run does not have fails at
// once, naming the metrics it has, before any host starts.
func TestOnlyUnknownMetric(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Only = []string{"single_client_wait_1k_refs", "single_client_teleport"}
	_, err := Run(t.Context(), cfg)
	if !errors.Is(err, ErrUnknownMetric) || !strings.Contains(err.Error(), "single_client_wait_1k_refs") {
		t.Fatalf("Run = %v; want ErrUnknownMetric naming the metrics", err)
	}
}
