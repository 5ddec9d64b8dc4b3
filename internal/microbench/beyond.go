package microbench

// The rows of issue 17 beyond Ray's metrics: guest compute against native
// Go (examples/pi's kernel, examples/quicksort), and work that crosses
// hosts in a two-host cluster on this machine.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/examples/pi/sample"
	"github.com/rayhost/rayhost/gossip"
	"github.com/rayhost/rayhost/host"
)

// piSamples is the samples of one π run: about a second in the guest.
const piSamples = 20_000_000

// measurePi runs examples/pi's sampling kernel as a task and natively in
// this process, alternately, one goroutine each; the figure is the median
// of guest time ÷ native time.
func measurePi(ctx context.Context, cfg Config, c *client.Client, mod string) (Metric, error) {
	var ratios []float64
	for range max(cfg.Runs, 3) {
		ref, err := c.Submit(ctx, mod, "pi_inside", 1, piSamples)
		if err != nil {
			return Metric{}, err
		}
		var r struct{ Ops, Seconds float64 }
		if err := c.Get(ctx, ref, &r); err != nil {
			return Metric{}, err
		}
		start := time.Now()
		if n := sample.New(1).Inside(piSamples); n <= 0 {
			return Metric{}, fmt.Errorf("native π: %d inside", n)
		}
		ratios = append(ratios, r.Seconds/time.Since(start).Seconds())
	}
	slices.Sort(ratios)
	_, std := meanStd(ratios)
	return Metric{Name: "monte_carlo_pi: guest time ÷ native Go", Where: "compute", Mean: ratios[len(ratios)/2], Std: std,
		Unit: "×", Goal: 2, Lower: true}, nil
}

var sortLine = regexp.MustCompile(`distributed sort of \d+ ints: ([0-9.]+) s`)

// measureQuicksort runs examples/quicksort (1M ints, nested tasks) on a
// host with 2 CPU slots, from the repository root, and reads the driver's
// own timing of the distributed sort.
func measureQuicksort(ctx context.Context, cfg Config) (Metric, error) {
	wasm, err := buildGuest(cfg.QuicksortPkg)
	if err != nil {
		return Metric{}, err
	}
	two := cfg
	two.CPUs = 2
	h, c, _, err := startHostWith(ctx, two, 2, "", false)
	if err != nil {
		return Metric{}, err
	}
	defer h.Close()
	m, err := c.RegisterModule(ctx, wasm, "quicksort")
	if err != nil {
		return Metric{}, err
	}
	var secs []float64
	for range max(1, min(2, cfg.Runs)) { // a sort takes seconds: two are enough
		var out strings.Builder
		if err := c.Run(ctx, m.Digest, func(l client.LogLine) { out.Write(l.Data) }); err != nil {
			return Metric{}, fmt.Errorf("%w\n%s", err, out.String())
		}
		match := sortLine.FindStringSubmatch(out.String())
		if match == nil || !strings.Contains(out.String(), "sorted correctly") {
			return Metric{}, fmt.Errorf("examples/quicksort said:\n%s", out.String())
		}
		s, _ := strconv.ParseFloat(match[1], 64)
		secs = append(secs, s)
	}
	mean, std := meanStd(secs)
	return Metric{Name: "quicksort of 1M ints, 2 CPUs", Where: "compute", Mean: mean, Std: std, Unit: "s", Goal: 1, Lower: true}, nil
}

// startPair starts two hosts in this process that form a cluster (fast
// gossip timings), and registers the benchmark guest on the first.
func startPair(ctx context.Context, cfg Config) ([]*host.Host, *client.Client, string, error) {
	var hosts []*host.Host
	closeAll := func() {
		for _, h := range hosts {
			h.Close()
		}
	}
	seed := ""
	for i := range 2 {
		dir, err := tempDir("rayhost-bench-cluster-")
		if err != nil {
			closeAll()
			return nil, nil, "", err
		}
		hc := host.DefaultConfig(dir)
		hc.ID = fmt.Sprintf("bench-%d", i)
		hc.ListenAddr = "127.0.0.1:0"
		hc.NumCPUs, hc.Workers = float64(cfg.CPUs), cfg.CPUs
		hc.WorkerCommand = cfg.WorkerCommand
		hc.Logger = slog.New(slog.DiscardHandler)
		if d, err := os.UserCacheDir(); err == nil {
			hc.CacheDir = filepath.Join(d, "rayhost", "wazero")
		}
		cc := host.DefaultClusterConfig()
		cc.Gossip.BindAddr = "127.0.0.1:0"
		cc.Gossip.Timings = gossip.FastTimings()
		if seed != "" {
			cc.Seeds = []string{seed}
		}
		hc.Cluster = cc
		h, err := host.New(hc)
		if err != nil {
			closeAll()
			return nil, nil, "", err
		}
		hosts = append(hosts, h)
		seed = hosts[0].GossipAddr()
	}
	c := client.New(hosts[0].Addr())
	for deadline := time.Now().Add(time.Minute); ; {
		alive := 0
		for _, h := range hosts {
			ms, err := client.New(h.Addr()).Members(ctx)
			if err == nil && len(ms) == 2 && ms[0].State == "alive" && ms[1].State == "alive" {
				alive++
			}
		}
		if alive == 2 {
			break
		}
		if time.Now().After(deadline) {
			closeAll()
			return nil, nil, "", fmt.Errorf("the two hosts did not see each other")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if guestWasm == nil {
		var err error
		if guestWasm, err = buildGuest(cfg.GuestPkg); err != nil {
			closeAll()
			return nil, nil, "", err
		}
	}
	m, err := c.RegisterModule(ctx, guestWasm, "bench")
	if err != nil {
		closeAll()
		return nil, nil, "", err
	}
	return hosts, c, m.Digest, nil
}

// pullBytes is the object pulled between hosts.
const pullBytes = 64 << 20

// measureCluster: trivial tasks submitted to one host and pinned to the
// other (1,000 per batch from the Go client, then one Wait), and a 64 MiB
// object made on the second host read whole through the first (which pulls
// it into its store and streams it to the client).
func measureCluster(ctx context.Context, cfg Config) ([]Metric, error) {
	hosts, c, mod, err := startPair(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, h := range hosts {
			h.Close()
		}
	}()
	peer := client.Scheduling{NodeID: hosts[1].ID()}
	calls := make([]client.Call, 1000)
	for i := range calls {
		calls[i] = client.Call{Module: mod, Function: "small", Scheduling: peer}
	}
	rates, err := timeLoop(cfg, float64(len(calls)), func() error {
		refs, err := submitBatch(ctx, c, calls)
		if err == nil {
			_, _, err = c.Wait(ctx, refs, len(refs), -1)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tasks on a peer host: %w", err)
	}
	tasks := newMetric("tasks_on_peer_host", "cluster", rates)
	tasks.Goal = 20000

	var gbs []float64
	for run := range cfg.Runs + 1 { // the first warms up
		made, err := c.SubmitCall(ctx, client.Call{Module: mod, Function: "make_bytes", Args: []any{pullBytes}, Scheduling: peer})
		if err != nil {
			return nil, err
		}
		if _, _, err := c.Wait(ctx, made[:1], 1, -1); err != nil {
			return nil, err
		}
		var sink countingWriter
		start := time.Now()
		if _, err := c.GetStream(ctx, made[0], &sink); err != nil {
			return nil, fmt.Errorf("pull between hosts: %w", err)
		}
		took := time.Since(start)
		if sink.n != pullBytes {
			return nil, fmt.Errorf("pull between hosts: read %d bytes, want %d", sink.n, pullBytes)
		}
		if run > 0 {
			gbs = append(gbs, float64(pullBytes)/took.Seconds()/1e9)
		}
		_ = c.Release(ctx, made...)
	}
	mean, std := meanStd(gbs)
	pull := Metric{Name: "pull_between_hosts (64 MiB, to the client)", Where: "cluster", Mean: mean, Std: std, Unit: "GB/s", Goal: 1}
	return []Metric{tasks, pull}, nil
}

// copiesBytes is the large put whose copies are counted: the largest
// round figure under the default MaxResultBytes (256 MiB).
const copiesBytes = 200 << 20

// measureCopies puts copiesBytes from a guest on a `rayhost start`
// process and reads the peak RSS (VmHWM, reset just before through
// /proc/pid/clear_refs) of the host and of the worker above their RSS
// before the put, as multiples of the object: the guest's own value is
// 1× of the worker's, and every further copy in user space adds 1×.
func measureCopies(ctx context.Context, cfg Config) ([]Metric, error) {
	dir, err := os.MkdirTemp("", "rayhost-bench-copies-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cmd, c, err := startHostProcess(ctx, cfg.WorkerCommand[0], dir, 1, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if guestWasm == nil {
		if guestWasm, err = buildGuest(cfg.GuestPkg); err != nil {
			return nil, err
		}
	}
	m, err := c.RegisterModule(ctx, guestWasm, "bench")
	if err != nil {
		return nil, err
	}
	put := func(n int) error {
		ref, err := c.Submit(ctx, m.Digest, "put_large", n)
		if err != nil {
			return err
		}
		var got int
		if err := c.Get(ctx, ref, &got); err != nil {
			return err
		}
		_ = c.Release(ctx, ref)
		return nil
	}
	if err := put(1 << 20); err != nil { // a worker has the module
		return nil, err
	}
	pids := append([]int{cmd.Process.Pid}, children(cmd.Process.Pid)...)
	before := map[int]float64{}
	for _, pid := range pids {
		before[pid] = rss(pid)
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
			return nil, fmt.Errorf("resetting the peak RSS: %w", err)
		}
	}
	if err := put(copiesBytes); err != nil {
		return nil, err
	}
	obj := float64(copiesBytes) / (1 << 20)
	hostPeak := (procStatus(pids[0], "VmHWM:") - before[pids[0]]) / obj
	workerPeak := 0.0
	for _, pid := range pids[1:] {
		workerPeak = max(workerPeak, (procStatus(pid, "VmHWM:")-before[pid])/obj)
	}
	return []Metric{
		{Name: "200 MiB put: host peak RSS ÷ object", Where: "copies", Mean: hostPeak, Unit: "×", Goal: 1.5, Lower: true},
		{Name: "200 MiB put: worker peak RSS ÷ object", Where: "copies", Mean: workerPeak, Unit: "×"},
	}, nil
}

// submitBatch submits calls in one stream and returns each one's first ref.
func submitBatch(ctx context.Context, c *client.Client, calls []client.Call) ([]client.ObjectRef, error) {
	refs, err := c.SubmitBatch(ctx, calls)
	if err != nil {
		return nil, err
	}
	flat := make([]client.ObjectRef, len(refs))
	for i, r := range refs {
		flat[i] = r[0]
	}
	return flat, nil
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }
