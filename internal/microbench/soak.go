package microbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/store"
)

// SoakConfig is `rayhost microbenchmark --soak`: issue 16's soak, a driver
// (bench/soak) that runs Tasks tasks with 1 KiB results and Puts puts of
// PutKiB KiB, dropping every ref as it goes, on a host process of its own
// whose RSS and data directory are printed at every tenth of the run.
type SoakConfig struct {
	GuestPkg string // the soak driver package (bench/soak)
	Tasks    int
	Puts     int
	PutKiB   int
	CPUs     int
	Quota    string // the host's --store-quota ("0": none)
	// Idle is how long to wait after the driver ended before a last
	// sample (the store reclaims at least once a minute).
	Idle time.Duration
	// Settled, if set, ends the idle wait early: the host is sampled every
	// second after the driver ended until Settled returns true (or Idle
	// has passed; RunSoak then fails with ErrNotSettled).
	Settled func(start, now SoakSample) bool
	Out     io.Writer
	// Exe is the rayhost executable that runs the host (default: this one).
	Exe string
}

// DefaultSoakConfig is the figures: a million tasks and 10,000
// puts of 1 MiB.
func DefaultSoakConfig() SoakConfig {
	return SoakConfig{GuestPkg: "./bench/soak", Tasks: 1_000_000, Puts: 10_000, PutKiB: 1 << 10, CPUs: 2, Quota: "0",
		Idle: 70 * time.Second, Out: os.Stdout}
}

// SoakSample is the host at one point of the run.
type SoakSample struct {
	Label    string
	Percent  int // of the tasks done; -1 before the driver started
	Tasks    int
	Puts     int
	Elapsed  time.Duration
	HostRSS  float64 // MiB
	HostAnon float64 // MiB of HostRSS that is the host's own memory, not mapped files
	// HostHeap is the host's live Go heap at its last collection (MiB,
	// whole: GODEBUG=gctrace=1), -1 before one: what its bookkeeping
	// takes, apart from garbage not yet collected.
	HostHeap   float64
	WorkersRSS float64 // MiB, all worker processes
	DataDir    float64 // MiB on disk, the whole data directory
	Store      float64 // MiB on disk, the object store
	Objects    int     // objects the host counts references to (rayhost memory)
	Freed      uint64  // objects it has freed
	// Span is the range of the host's RSS, anonymous RSS and data
	// directory over the stretch of the run this sample ends (sampled
	// every second): the store is a sawtooth (value-log files filled, then
	// reclaimed), so one sample lands anywhere between its floor and top,
	// while a leak raises both.
	Span SoakSpan
}

// SoakSpan is the lowest and highest of each figure over a stretch of the
// run (MiB; zero when the stretch had no sample).
type SoakSpan struct {
	Samples             int
	RSSLow, RSSHigh     float64
	AnonLow, AnonHigh   float64
	DataLow, DataHigh   float64
	StoreLow, StoreHigh float64
}

func (sp *SoakSpan) add(rss, anon, data, store float64) {
	if sp.Samples == 0 {
		*sp = SoakSpan{RSSLow: rss, RSSHigh: rss, AnonLow: anon, AnonHigh: anon, DataLow: data, DataHigh: data, StoreLow: store, StoreHigh: store}
	}
	sp.Samples++
	sp.RSSLow, sp.RSSHigh = min(sp.RSSLow, rss), max(sp.RSSHigh, rss)
	sp.AnonLow, sp.AnonHigh = min(sp.AnonLow, anon), max(sp.AnonHigh, anon)
	sp.DataLow, sp.DataHigh = min(sp.DataLow, data), max(sp.DataHigh, data)
	sp.StoreLow, sp.StoreHigh = min(sp.StoreLow, store), max(sp.StoreHigh, store)
}

// spanSampler samples the host every second into the current span.
type spanSampler struct {
	mu   sync.Mutex
	span SoakSpan
}

func (ss *spanSampler) run(ctx context.Context, pid int, dir string) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		rss, anon := rss(pid), rssAnon(pid)
		data, st := diskMiB(dir), diskMiB(filepath.Join(dir, "objects"))
		ss.mu.Lock()
		ss.span.add(rss, anon, data, st)
		ss.mu.Unlock()
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// take returns the span so far and starts the next one.
func (ss *spanSampler) take() SoakSpan {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	sp := ss.span
	ss.span = SoakSpan{}
	return sp
}

var progressLine = regexp.MustCompile(`soak progress (\d+)%: (\d+) tasks, (\d+) puts`)

// RunSoak runs the soak and prints a line per sample, then how the end
// compares with the first tenth.
func RunSoak(ctx context.Context, cfg SoakConfig) ([]SoakSample, error) {
	if cfg.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cfg.Exe = exe
	}
	out := cfg.Out
	dir, err := os.MkdirTemp("", "rayhost-soak-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	wasm, err := buildGuest(cfg.GuestPkg)
	if err != nil {
		return nil, err
	}
	gc := newGCTrace()
	traceGC := func(cmd *exec.Cmd) {
		// The host's own; its workers start with an empty environment.
		cmd.Env = append(os.Environ(), "GODEBUG="+strings.TrimPrefix(os.Getenv("GODEBUG")+",gctrace=1", ","))
		cmd.Stderr = gc
	}
	cmd, c, err := startHostProcess(ctx, cfg.Exe, dir, cfg.CPUs, traceGC, "--store-quota", cfg.Quota)
	if err != nil {
		return nil, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	mod, err := c.RegisterModule(ctx, wasm, "soak")
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "rayhost microbenchmark --soak: %d tasks with 1 KiB results, %d puts of %d KiB, dropping refs as it goes; a host process with %d CPU slots, store quota %s\n\n",
		cfg.Tasks, cfg.Puts, cfg.PutKiB, cfg.CPUs, cfg.Quota)
	fmt.Fprintf(out, "  %8s %10s %8s %9s %12s %12s %10s %14s %14s %12s %9s %10s   %s\n", "progress", "tasks", "puts", "elapsed", "host RSS", "(anon)", "(Go heap)", "workers RSS", "data dir", "store", "objects", "freed", "since the last line, low–high: RSS | anon | data dir (MiB)")

	start := time.Now()
	spans := &spanSampler{}
	spanCtx, stopSpans := context.WithCancel(ctx)
	defer stopSpans()
	go spans.run(spanCtx, cmd.Process.Pid, dir)
	sample := func(label string, pct, tasks, puts int) SoakSample {
		s := SoakSample{Label: label, Percent: pct, Tasks: tasks, Puts: puts, Elapsed: time.Since(start),
			HostRSS: rss(cmd.Process.Pid), HostAnon: rssAnon(cmd.Process.Pid), HostHeap: gc.Live()}
		for _, pid := range children(cmd.Process.Pid) {
			s.WorkersRSS += rss(pid)
		}
		s.DataDir, s.Store = diskMiB(dir), diskMiB(filepath.Join(dir, "objects"))
		if m, err := c.Memory(ctx, 1); err == nil {
			s.Objects, s.Freed = m.Summary.Objects, m.Summary.Freed
		}
		s.Span = spans.take()
		s.Span.add(s.HostRSS, s.HostAnon, s.DataDir, s.Store)
		fmt.Fprintf(out, "  %8s %10d %8d %8.0fs %8.1f MiB %8.1f MiB %6.0f MiB %10.1f MiB %10.1f MiB %8.1f MiB %9d %10d   %s\n",
			label, s.Tasks, s.Puts, s.Elapsed.Seconds(), s.HostRSS, s.HostAnon, s.HostHeap, s.WorkersRSS, s.DataDir, s.Store, s.Objects, s.Freed,
			fmt.Sprintf("%.0f–%.0f | %.0f–%.0f | %.0f–%.0f", s.Span.RSSLow, s.Span.RSSHigh, s.Span.AnonLow, s.Span.AnonHigh, s.Span.DataLow, s.Span.DataHigh))
		return s
	}
	samples := []SoakSample{sample("start", -1, 0, 0)}
	var log strings.Builder
	env := map[string]string{"SOAK_TASKS": strconv.Itoa(cfg.Tasks), "SOAK_PUTS": strconv.Itoa(cfg.Puts), "SOAK_PUT_KIB": strconv.Itoa(cfg.PutKiB)}
	err = c.Run(ctx, mod.Digest, func(l client.LogLine) {
		for _, line := range strings.Split(string(l.Data), "\n") {
			if m := progressLine.FindStringSubmatch(line); m != nil {
				pct, _ := strconv.Atoi(m[1])
				tasks, _ := strconv.Atoi(m[2])
				puts, _ := strconv.Atoi(m[3])
				samples = append(samples, sample(m[1]+"%", pct, tasks, puts))
			} else if line != "" && log.Len() < 64<<10 {
				log.WriteString(line + "\n")
			}
		}
	}, client.WithGrants(nil, env))
	if err != nil {
		return samples, fmt.Errorf("the soak driver: %w\n%s", err, log.String())
	}
	if len(samples) < 3 {
		return samples, errors.New("the soak driver printed no progress")
	}
	first, last := samples[1], samples[len(samples)-1]
	// Idle, once the driver's end released what it held: the host's store
	// runs a reclaim round every minute at the latest.
	samples = append(samples, sample("ended", 100, last.Tasks, last.Puts))
	if cfg.Settled != nil {
		settled, err := settle(ctx, cfg, func() SoakSample { return sample("settling", 100, last.Tasks, last.Puts) }, samples[0])
		if settled.Label != "" {
			samples = append(samples, settled)
		}
		if err != nil {
			return samples, err
		}
	} else if cfg.Idle > 0 {
		select {
		case <-time.After(cfg.Idle):
		case <-ctx.Done():
			return samples, ctx.Err()
		}
		samples = append(samples, sample("idle", 100, last.Tasks, last.Puts))
	}
	fmt.Fprint(out, "\n"+indent(log.String()))
	fmt.Fprintf(out, "\n  end of the run against its first tenth: host RSS %+.1f%% (%.1f → %.1f MiB; anonymous %.1f → %.1f MiB, %+.1f%%; Go live heap %.0f → %.0f MiB), data dir %+.1f%% (%.1f → %.1f MiB), %.0f tasks/s\n",
		change(first.HostRSS, last.HostRSS), first.HostRSS, last.HostRSS,
		first.HostAnon, last.HostAnon, change(first.HostAnon, last.HostAnon), first.HostHeap, last.HostHeap,
		change(first.DataDir, last.DataDir), first.DataDir, last.DataDir,
		float64(last.Tasks)/last.Elapsed.Seconds())
	f, l := first.Span, last.Span
	fmt.Fprintf(out, "  the last tenth's range against the first's (every second; the tops are the sawtooth's): host RSS top %+.1f%% (%.1f → %.1f MiB), anonymous top %+.1f%% (%.1f → %.1f MiB), data dir top %+.1f%% (%.1f → %.1f MiB), data dir floor %.1f → %.1f MiB\n",
		change(f.RSSHigh, l.RSSHigh), f.RSSHigh, l.RSSHigh, change(f.AnonHigh, l.AnonHigh), f.AnonHigh, l.AnonHigh,
		change(f.DataHigh, l.DataHigh), f.DataHigh, l.DataHigh, f.DataLow, l.DataLow)
	return samples, nil
}

// ErrNotSettled: the host did not give back what the soak made within
// SoakConfig.Idle after the driver ended.
var ErrNotSettled = errors.New("microbench: the host did not settle after the soak")

// settle samples the host every second until cfg.Settled says it is back
// (a last sample, labelled "settled"), or cfg.Idle has passed.
func settle(ctx context.Context, cfg SoakConfig, sample func() SoakSample, start SoakSample) (SoakSample, error) {
	deadline := time.Now().Add(cfg.Idle)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		s := sample()
		if cfg.Settled(start, s) {
			s.Label = "settled"
			return s, nil
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("%w: after %v: %d objects held, store %.1f MiB (%.1f MiB at the start)",
				ErrNotSettled, cfg.Idle, s.Objects, s.Store, start.Store)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return SoakSample{}, ctx.Err()
		}
	}
}

func change(from, to float64) float64 {
	if from == 0 {
		return 0
	}
	return (to - from) / from * 100
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ") + "\n"
}

// diskMiB is the space the files under dir take on disk (allocated blocks:
// Badger's files are sparse), in MiB; 0 if it cannot be walked.
func diskMiB(dir string) float64 {
	n, _ := store.DirUsage(dir)
	return float64(n) / (1 << 20)
}
