package microbench

import (
	"bytes"
	"path/filepath"
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
		"single_client_put_gigabytes", "single_client_tasks_and_get_batch", "single_client_wait_1k_refs",
		"bare wazero export call", "native Go: goroutine per call", "idle worker", "cold cache", "warm cache", "2 slots"}
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

// TestSoakSmoke runs a very short soak: `rayhost microbenchmark --soak`
// must keep working (its figures are in docs/BENCHMARKS.md).
func TestSoakSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a host process")
	}
	var out bytes.Buffer
	cfg := DefaultSoakConfig()
	cfg.GuestPkg = filepath.Join(testutil.RepoRoot(), "bench", "soak")
	cfg.Tasks, cfg.Puts, cfg.PutKiB, cfg.Idle = 200, 4, 64, 0
	cfg.Out = &out
	cfg.Exe = testutil.RayhostBinary(t)
	samples, err := RunSoak(t.Context(), cfg)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log(out.String())
	// start, ten progress lines, the end.
	if len(samples) != 12 || samples[10].Tasks != 200 || samples[10].Puts != 4 {
		t.Fatalf("%d samples, the last progress at %+v", len(samples), samples[len(samples)-2])
	}
	for _, s := range samples {
		if s.HostRSS <= 0 || s.DataDir <= 0 {
			t.Fatalf("sample %q measured nothing: %+v", s.Label, s)
		}
	}
}
