// Package microbench is `rayhost microbenchmark`: Ray's microbenchmark
// metrics (ray_perf.py: 1 s warm-up, then 4 runs × 2 s, mean ± stddev of
// ops/s) measured on real hosts with worker processes, from a driver inside
// the cluster and from the Go client over Connect, next to Ray 2.22's
// figures, the goals, and the baselines that bound them.
package microbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/host"
)

// Config says what to run.
type Config struct {
	GuestPkg     string // the benchmark guest package, built for wasip1
	QuicksortPkg string // examples/quicksort
	Warmup       time.Duration
	Runs         int
	Duration     time.Duration
	CPUs         int
	Out          io.Writer
	// ProfileDir, when set, receives CPU profiles of this process (host and
	// client) and of every worker, for the in-cluster metrics.
	ProfileDir string
	// WorkerCommand starts workers (default: this executable + "worker").
	WorkerCommand []string
	// Only, when set, names the in-cluster metrics to run (e.g.
	// "single_client_wait_1k_refs"), or "pi", "quicksort", "cluster",
	// "copies", "start" (a new module's first result: cold once, then warm
	// Runs times, with the profiles if ProfileDir is set); the
	// Connect client's metrics, the baselines, start-up, memory and scaling
	// are then skipped.
	Only []string
}

// DefaultConfig is Ray's method on this machine's CPUs.
func DefaultConfig() Config {
	return Config{GuestPkg: "./bench/guest", QuicksortPkg: "./examples/quicksort", Warmup: time.Second, Runs: 4, Duration: 2 * time.Second,
		CPUs: runtime.NumCPU(), Out: os.Stdout}
}

// inClusterMetrics are measured by a driver task on the host.
var inClusterMetrics = []string{
	"single_client_tasks_sync", "single_client_tasks_async", "1_1_actor_calls_sync", "1_1_actor_calls_async",
	"single_client_get_calls", "single_client_put_calls", "single_client_put_gigabytes",
	"single_client_get_gigabytes", "single_client_tasks_and_get_batch", "single_client_wait_1k_refs",
}

// otherMetrics are the names Config.Only accepts beside inClusterMetrics.
var otherMetrics = []string{"multi_client_tasks_async", "pi", "quicksort", "cluster", "copies", "start"}

// ErrUnknownMetric: Config.Only names a metric Run does not have.
var ErrUnknownMetric = errors.New("microbench: unknown metric")

// Metric is one measured figure.
type Metric struct {
	Name, Where string
	Mean, Std   float64
	Unit        string
	Ray, Goal   float64 // 0: none
	Lower       bool    // the goal is an upper bound (a latency)
}

var rayFigures = map[string]float64{
	"single_client_tasks_sync": 971, "single_client_tasks_async": 8194, "multi_client_tasks_async": 21744,
	"1_1_actor_calls_sync": 2096, "1_1_actor_calls_async": 9063, "single_client_get_calls": 10270,
	"single_client_put_calls": 5196, "single_client_put_gigabytes": 20.1, "single_client_tasks_and_get_batch": 8.14,
	"single_client_wait_1k_refs": 5.01,
}

var goals = map[string]float64{
	"single_client_tasks_sync": 10000, "single_client_tasks_async": 50000, "1_1_actor_calls_sync": 10000,
	"1_1_actor_calls_async": 50000, "single_client_get_calls": 100000, "single_client_put_calls": 50000,
	"single_client_put_gigabytes": 2, "single_client_get_gigabytes": 2, "single_client_wait_1k_refs": 10, "multi_client_tasks_async": 50000,
}

// Run runs every metric and writes the table to cfg.Out.
func Run(ctx context.Context, cfg Config) ([]Metric, error) {
	defer removeTempDirs()
	for _, name := range cfg.Only {
		if !slices.Contains(inClusterMetrics, name) && !slices.Contains(otherMetrics, name) {
			return nil, fmt.Errorf("%w: %q is not an in-cluster metric (%s, %s)",
				ErrUnknownMetric, name, strings.Join(inClusterMetrics, ", "), strings.Join(otherMetrics, ", "))
		}
	}
	if len(cfg.WorkerCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cfg.WorkerCommand = []string{exe, "worker"}
	}
	out := cfg.Out
	fmt.Fprintf(out, "rayhost microbenchmark: %d CPUs, %s, warm-up %v, %d runs × %v\n\n", cfg.CPUs, runtime.Version(), cfg.Warmup, cfg.Runs, cfg.Duration)
	wasm, err := buildGuest(cfg.GuestPkg)
	if err != nil {
		return nil, err
	}
	var ms []Metric
	if slices.Equal(cfg.Only, []string{"start"}) {
		ms, err := measureStartOnly(ctx, cfg, wasm, true)
		for _, m := range ms {
			report(out, m)
		}
		return ms, err
	}

	// Start-up: a new module's first result, with an empty compilation cache
	// and again with it warm; host start.
	startup, err := measureStartup(ctx, cfg, wasm)
	if err != nil {
		return nil, err
	}

	if cfg.ProfileDir != "" {
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			return nil, err
		}
		os.Setenv("RAYHOST_CPUPROFILE_DIR", cfg.ProfileDir) // inherited by the workers
		f, err := os.Create(filepath.Join(cfg.ProfileDir, "host.pprof"))
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
	}
	h, c, mod, err := startHost(ctx, cfg, cfg.CPUs, "")
	if err != nil {
		return nil, err
	}
	closeMain := sync.OnceFunc(func() {
		h.Close()
		if cfg.ProfileDir != "" {
			pprof.StopCPUProfile()
			os.Unsetenv("RAYHOST_CPUPROFILE_DIR")
		}
	})
	defer closeMain()

	inCluster := inClusterMetrics
	if len(cfg.Only) > 0 {
		for _, name := range cfg.Only {
			var got []Metric
			var err error
			switch name {
			case "pi":
				var m Metric
				m, err = measurePi(ctx, cfg, c, mod)
				got = []Metric{m}
			case "quicksort":
				var m Metric
				m, err = measureQuicksort(ctx, cfg)
				got = []Metric{m}
			case "cluster":
				got, err = measureCluster(ctx, cfg)
			case "copies":
				got, err = measureCopies(ctx, cfg)
			case "start":
				got, err = measureStartOnly(ctx, cfg, wasm, false)
			default:
				fn := "metric"
				if name == "multi_client_tasks_async" {
					fn = "multi_client"
				}
				var m Metric
				m, err = timeTask(ctx, cfg, c, mod, fn, name)
				got = []Metric{m}
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			for _, m := range got {
				ms = append(ms, m)
				report(out, m)
			}
		}
		return ms, nil
	}
	for _, name := range inCluster {
		m, err := timeTask(ctx, cfg, c, mod, "metric", name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		ms = append(ms, m)
		report(out, m)
	}
	m, err := timeTask(ctx, cfg, c, mod, "multi_client", "multi_client_tasks_async")
	if err != nil {
		return nil, err
	}
	ms = append(ms, m)
	report(out, m)

	for _, m := range clientMetrics(ctx, cfg, c, mod) {
		ms = append(ms, m)
		report(out, m)
	}
	pi, err := measurePi(ctx, cfg, c, mod)
	if err != nil {
		return nil, fmt.Errorf("π: %w", err)
	}
	closeMain() // the profiles cover the metrics above

	fmt.Fprintln(out, "\nguest compute (examples/pi's kernel; examples/quicksort):")
	qs, err := measureQuicksort(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("quicksort: %w", err)
	}
	for _, m := range []Metric{pi, qs} {
		ms = append(ms, m)
		report(out, m)
	}
	fmt.Fprintln(out, "\nthe copies of a large put (peak RSS above the RSS before it):")
	cp, err := measureCopies(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("copies: %w", err)
	}
	for _, m := range cp {
		ms = append(ms, m)
		report(out, m)
	}
	fmt.Fprintln(out, "\nacross two hosts on this machine (they share its cores):")
	cl, err := measureCluster(ctx, cfg)
	if err != nil {
		return nil, err
	}
	for _, m := range cl {
		ms = append(ms, m)
		report(out, m)
	}

	fmt.Fprintln(out, "\nbaselines (the same trivial work):")
	native := nativeBaseline(cfg)
	bare, err := wazeroBaseline(ctx, cfg)
	if err != nil {
		return nil, err
	}
	for _, b := range []Metric{native, bare} {
		ms = append(ms, b)
		report(out, b)
	}
	for _, m := range ms {
		if m.Name == "single_client_tasks_async" && m.Where == "in cluster" {
			fmt.Fprintf(out, "  per-task cost: %.1f µs = %.0f× a goroutine call, %.0f× a bare wazero export call\n",
				1e6/m.Mean, native.Mean/m.Mean, bare.Mean/m.Mean)
		}
	}

	fmt.Fprintln(out, "\nstart-up and memory:")
	for _, s := range startup {
		ms = append(ms, s)
		report(out, s)
	}
	mem, err := measureMemory(ctx, cfg)
	if err != nil {
		fmt.Fprintf(out, "  memory: %v\n", err)
	}
	for _, s := range mem {
		ms = append(ms, s)
		report(out, s)
	}

	fmt.Fprintln(out, "\nscaling (single_client_tasks_async by worker slots):")
	for _, slots := range []int{1, 2, 4} {
		h2, c2, mod2, err := startHost(ctx, cfg, slots, "")
		if err != nil {
			return nil, err
		}
		one := cfg
		one.Runs = 2
		m, err := timeTask(ctx, one, c2, mod2, "metric", "single_client_tasks_async")
		h2.Close()
		if err != nil {
			return nil, err
		}
		m.Name = fmt.Sprintf("single_client_tasks_async, %d slots", slots)
		m.Ray, m.Goal = 0, 0
		ms = append(ms, m)
		report(out, m)
	}
	return ms, nil
}

func report(out io.Writer, m Metric) {
	line := fmt.Sprintf("  %-46s %-15s %12.1f ± %-9.1f %-6s", m.Name, m.Where, m.Mean, m.Std, m.Unit)
	if m.Mean < 10 {
		line = fmt.Sprintf("  %-46s %-15s %12.2f ± %-9.2f %-6s", m.Name, m.Where, m.Mean, m.Std, m.Unit)
	}
	if m.Ray > 0 {
		line += fmt.Sprintf("  Ray 2.22: %g", m.Ray)
	}
	if m.Goal > 0 {
		mark, op := "meets", "≥"
		if m.Lower {
			op = "≤"
		}
		if (!m.Lower && m.Mean < m.Goal) || (m.Lower && m.Mean > m.Goal) {
			mark = "MISSES"
		}
		line += fmt.Sprintf("  goal %s %g (%s)", op, m.Goal, mark)
	}
	fmt.Fprintln(out, strings.TrimRight(line, " "))
}

func buildGuest(pkg string) ([]byte, error) {
	f, err := os.CreateTemp("", "rayhost-bench-*.wasm")
	if err != nil {
		return nil, err
	}
	f.Close()
	defer os.Remove(f.Name())
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", f.Name(), pkg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building %s: %v\n%s", pkg, err, out)
	}
	return os.ReadFile(f.Name())
}

var guestWasm []byte

func startHost(ctx context.Context, cfg Config, cpus int, cacheDir string) (*host.Host, *client.Client, string, error) {
	return startHostWith(ctx, cfg, cpus, cacheDir, true)
}

// startHostWith starts a host whose workers are ready, and registers the
// benchmark guest if withModule.
func startHostWith(ctx context.Context, cfg Config, cpus int, cacheDir string, withModule bool) (*host.Host, *client.Client, string, error) {
	dir, err := tempDir("rayhost-bench-")
	if err != nil {
		return nil, nil, "", err
	}
	return startHostIn(ctx, cfg, cpus, dir, cacheDir, withModule)
}

// tempDirs are the data directories of the hosts Run started, removed when
// it returns (their hosts are closed by then).
var (
	tempMu   sync.Mutex
	tempDirs []string
)

// tempDir makes a directory that Run removes when it returns.
func tempDir(pattern string) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err == nil {
		tempMu.Lock()
		tempDirs = append(tempDirs, dir)
		tempMu.Unlock()
	}
	return dir, err
}

// removeTempDirs removes what tempDir made.
func removeTempDirs() {
	tempMu.Lock()
	dirs := tempDirs
	tempDirs = nil
	tempMu.Unlock()
	for _, d := range dirs {
		_ = os.RemoveAll(d)
	}
}

// startHostIn is startHostWith on the data directory dir.
func startHostIn(ctx context.Context, cfg Config, cpus int, dir, cacheDir string, withModule bool) (*host.Host, *client.Client, string, error) {
	hc := host.DefaultConfig(dir)
	hc.ListenAddr = "127.0.0.1:0"
	hc.NumCPUs, hc.Workers = float64(cpus), cpus
	hc.WorkerCommand = cfg.WorkerCommand
	hc.Logger = slog.New(slog.DiscardHandler)
	hc.CacheDir = cacheDir
	if cacheDir == "" {
		if d, err := os.UserCacheDir(); err == nil {
			hc.CacheDir = filepath.Join(d, "rayhost", "wazero")
		}
	}
	h, err := host.New(hc)
	if err != nil {
		return nil, nil, "", err
	}
	c := client.New(h.Addr())
	for deadline := time.Now().Add(30 * time.Second); ; {
		hl, err := c.Health(ctx)
		if err == nil && hl.Workers >= cpus+1 {
			break
		}
		if time.Now().After(deadline) {
			h.Close()
			return nil, nil, "", fmt.Errorf("the host's workers did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !withModule {
		return h, c, "", nil
	}
	if guestWasm == nil {
		if guestWasm, err = buildGuest(cfg.GuestPkg); err != nil {
			h.Close()
			return nil, nil, "", err
		}
	}
	m, err := c.RegisterModule(ctx, guestWasm, "bench")
	if err != nil {
		h.Close()
		return nil, nil, "", err
	}
	return h, c, m.Digest, nil
}

// timeTask runs a metric inside the cluster with Ray's method: a warm-up,
// then cfg.Runs runs of cfg.Duration, each reporting its own ops/s.
func timeTask(ctx context.Context, cfg Config, c *client.Client, mod, fn, name string) (Metric, error) {
	call := func(d time.Duration) (float64, error) {
		var args []any
		if fn == "multi_client" {
			args = []any{4, d.Milliseconds()}
		} else {
			args = []any{name, d.Milliseconds()}
		}
		ref, err := c.Submit(ctx, mod, fn, args...)
		if err != nil {
			return 0, err
		}
		var r struct{ Ops, Seconds float64 }
		if err := c.Get(ctx, ref, &r); err != nil {
			return 0, err
		}
		return r.Ops / r.Seconds, nil
	}
	if _, err := call(cfg.Warmup); err != nil {
		return Metric{}, err
	}
	var rates []float64
	for range cfg.Runs {
		r, err := call(cfg.Duration)
		if err != nil {
			return Metric{}, err
		}
		rates = append(rates, r)
	}
	return newMetric(name, "in cluster", rates), nil
}

func newMetric(name, where string, rates []float64) Metric {
	mean, std := meanStd(rates)
	unit := "ops/s"
	if strings.HasSuffix(name, "_gigabytes") {
		unit = "GB/s"
	}
	return Metric{Name: name, Where: where, Mean: mean, Std: std, Unit: unit, Ray: rayFigures[name], Goal: goals[name]}
}

func meanStd(xs []float64) (float64, float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	mean := sum / float64(len(xs))
	v := 0.0
	for _, x := range xs {
		v += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(v / float64(len(xs)))
}

// timeLoop is Ray's timeit for work done from this process.
func timeLoop(cfg Config, opsPerCall float64, fn func() error) ([]float64, error) {
	run := func(d time.Duration) (float64, error) {
		start := time.Now()
		n := 0.0
		for time.Since(start) < d {
			if err := fn(); err != nil {
				return 0, err
			}
			n += opsPerCall
		}
		return n / time.Since(start).Seconds(), nil
	}
	if _, err := run(cfg.Warmup); err != nil {
		return nil, err
	}
	var rates []float64
	for range cfg.Runs {
		r, err := run(cfg.Duration)
		if err != nil {
			return nil, err
		}
		rates = append(rates, r)
	}
	return rates, nil
}

// clientMetrics measures from the Go client over Connect; submissions in
// bulk go over one stream (SubmitBatch), not a round trip each.
func clientMetrics(ctx context.Context, cfg Config, c *client.Client, mod string) []Metric {
	var out []Metric
	add := func(name string, ops float64, fn func() error) {
		rates, err := timeLoop(cfg, ops, fn)
		if err != nil {
			fmt.Fprintf(cfg.Out, "  %s (Connect client): %v\n", name, err)
			return
		}
		out = append(out, newMetric(name, "Connect client", rates))
	}
	add("single_client_tasks_sync", 1, func() error {
		ref, err := c.Submit(ctx, mod, "small")
		if err != nil {
			return err
		}
		_, err = c.GetValues(ctx, []client.ObjectRef{ref})
		return err
	})
	calls := make([]client.Call, 1000)
	for i := range calls {
		calls[i] = client.Call{Module: mod, Function: "small"}
	}
	add("single_client_tasks_async", 1000, func() error {
		refs, err := submitBatch(ctx, c, calls)
		if err == nil {
			_, err = c.GetValues(ctx, refs)
		}
		return err
	})
	obj, err := c.Put(ctx, 0)
	if err == nil {
		add("single_client_get_calls", 1, func() error {
			_, err := c.GetValues(ctx, []client.ObjectRef{obj})
			return err
		})
	}
	add("single_client_put_calls", 1, func() error {
		_, err := c.Put(ctx, 0)
		return err
	})
	return out
}
