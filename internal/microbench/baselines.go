package microbench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/rayhost/rayhost/client"
)

// nativeBaseline: the trivial work as a goroutine per call, its result sent
// back on a channel — the least a native task runtime could do.
func nativeBaseline(cfg Config) Metric {
	small := func() []byte { return []byte("ok") }
	rates, _ := timeLoop(cfg, 1000, func() error {
		ch := make(chan []byte, 1000)
		for range 1000 {
			go func() { ch <- small() }()
		}
		for range 1000 {
			<-ch
		}
		return nil
	})
	m := newMetric("native Go: goroutine per call", "baseline", rates)
	return m
}

// smallModule is a hand-assembled Wasm module exporting `small: () -> i32`.
var smallModule = []byte{
	0, 'a', 's', 'm', 1, 0, 0, 0,
	1, 5, 1, 0x60, 0, 1, 0x7f, // type () -> i32
	3, 2, 1, 0, // one function of type 0
	7, 9, 1, 5, 's', 'm', 'a', 'l', 'l', 0, 0, // export "small"
	10, 6, 1, 4, 0, 0x41, 1, 0x0b, // i32.const 1
}

// wazeroBaseline: the trivial work as a bare wazero export call on a live
// instance, the floor of any call into Wasm.
func wazeroBaseline(ctx context.Context, cfg Config) (Metric, error) {
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer rt.Close(ctx)
	mod, err := rt.Instantiate(ctx, smallModule)
	if err != nil {
		return Metric{}, err
	}
	fn := mod.ExportedFunction("small")
	stack := make([]uint64, 1)
	rates, err := timeLoop(cfg, 1000, func() error {
		for range 1000 {
			if err := fn.CallWithStack(ctx, stack); err != nil {
				return err
			}
		}
		return nil
	})
	return newMetric("bare wazero export call", "baseline", rates), err
}

// measureStartup: a new module's first result with an empty compilation
// cache and with a warm one, and how long a host takes to start.
func measureStartup(ctx context.Context, cfg Config, wasm []byte) ([]Metric, error) {
	cache, err := os.MkdirTemp("", "rayhost-bench-cache-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(cache)
	var out []Metric
	for _, label := range []string{"cold", "warm"} {
		start := time.Now()
		h, c, _, err := startHostNoModule(ctx, cfg, cache)
		if err != nil {
			return nil, err
		}
		hostStart := time.Since(start)
		t0 := time.Now()
		mod, err := c.RegisterModule(ctx, wasm, "")
		if err == nil {
			var ref client.ObjectRef
			if ref, err = c.Submit(ctx, mod.Digest, "small"); err == nil {
				_, err = c.GetValues(ctx, []client.ObjectRef{ref})
			}
		}
		first := time.Since(t0)
		h.Close()
		if err != nil {
			return nil, err
		}
		goal := 1000.0
		if label == "warm" {
			goal = 50
			out = append(out, Metric{Name: "host start (workers ready)", Where: "startup", Mean: float64(hostStart.Milliseconds()), Unit: "ms"})
		}
		out = append(out, Metric{Name: "new module → first result, " + label + " cache", Where: "startup",
			Mean: float64(first.Microseconds()) / 1000, Unit: "ms", Goal: goal, Lower: true})
	}
	return out, nil
}

func startHostNoModule(ctx context.Context, cfg Config, cache string) (interface{ Close() error }, *client.Client, string, error) {
	h, c, _, err := startHostWith(ctx, cfg, cfg.CPUs, cache, false)
	return h, c, "", err
}

// measureMemory starts `rayhost start` with two warm workers and reads the
// resident memory of the host and of each idle worker.
func measureMemory(ctx context.Context, cfg Config) ([]Metric, error) {
	dir, err := os.MkdirTemp("", "rayhost-bench-mem-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cmd, _, err := startHostProcess(ctx, cfg.WorkerCommand[0], dir, 2, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	time.Sleep(time.Second) // idle
	hostRSS := rss(cmd.Process.Pid)
	var workers []float64
	for _, pid := range children(cmd.Process.Pid) {
		workers = append(workers, rss(pid))
	}
	mean, std := meanStd(workers)
	return []Metric{
		{Name: "idle host (RSS)", Where: "memory", Mean: hostRSS, Unit: "MiB"},
		{Name: fmt.Sprintf("idle worker (RSS, %d workers)", len(workers)), Where: "memory", Mean: mean, Std: std, Unit: "MiB"},
	}, nil
}

// startHostProcess starts `rayhost start` on dir with cpus CPU slots and
// workers (and extra flags), and returns once its workers are ready.
// prepare, if set, may change the command before it starts (its
// environment, its stderr).
func startHostProcess(ctx context.Context, exe, dir string, cpus int, prepare func(*exec.Cmd), extra ...string) (*exec.Cmd, *client.Client, error) {
	n := strconv.Itoa(cpus)
	args := append([]string{"start", "--listen", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--data-dir", dir,
		"--num-cpus", n, "--workers", n, "--log-level", "error"}, extra...)
	cmd := exec.Command(exe, args...)
	if prepare != nil {
		prepare(cmd)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*exec.Cmd, *client.Client, error) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, nil, err
	}
	addr := ""
	lines := bufio.NewScanner(stdout)
	re := regexp.MustCompile(`listening on http://(\S+)`)
	for addr == "" && lines.Scan() {
		if m := re.FindStringSubmatch(lines.Text()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		return fail(fmt.Errorf("the host did not say where it listens"))
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	c := client.New(addr)
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, err := c.Health(ctx)
		if err == nil && h.Workers >= cpus+1 { // the warm workers and the spare
			return cmd, c, nil
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("the host's workers did not start"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func rss(pid int) float64 { return procStatus(pid, "VmRSS:") }

// rssAnon is the part of a process's RSS that is its own memory (heap,
// stacks), not pages of files it maps: Badger maps its value log, so the
// host's RSS follows the store's files while its anonymous memory is what
// bookkeeping would leak into.
func rssAnon(pid int) float64 { return procStatus(pid, "RssAnon:") }

// procStatus is a kB field of /proc/pid/status, in MiB (0 if unreadable).
func procStatus(pid int, field string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func children(pid int) []int {
	var out []int
	entries, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, e := range entries {
		b, err := os.ReadFile(e)
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			p, _ := strconv.Atoi(filepath.Base(filepath.Dir(e)))
			out = append(out, p)
		}
	}
	return out
}

// measureStartOnly is `--only start`: a new module's first result with an
// empty compilation cache once, then with the cache warm cfg.Runs times,
// each on a new host (which has not seen the module), split into the
// registration and the first task after it; then the module registered
// again on a host restarted on the same data directory, cfg.Runs times. With cfg.ProfileDir the warm
// runs are profiled (this process, which runs the host, and the workers)
// if profile.
func measureStartOnly(ctx context.Context, cfg Config, wasm []byte, profile bool) ([]Metric, error) {
	cache, err := os.MkdirTemp("", "rayhost-bench-cache-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(cache)
	// first starts a host on dir ("": a new one), registers the module and
	// gets its first result.
	first := func(dir string) (register, task time.Duration, err error) {
		var h interface{ Close() error }
		var c *client.Client
		if dir == "" {
			h, c, _, err = startHostNoModule(ctx, cfg, cache)
		} else {
			h, c, _, err = startHostIn(ctx, cfg, cfg.CPUs, dir, cache, false)
		}
		if err != nil {
			return 0, 0, err
		}
		defer h.Close()
		t0 := time.Now()
		mod, err := c.RegisterModule(ctx, wasm, "")
		if err != nil {
			return 0, 0, err
		}
		t1 := time.Now()
		ref, err := c.Submit(ctx, mod.Digest, "small")
		if err == nil {
			_, err = c.GetValues(ctx, []client.ObjectRef{ref})
		}
		return t1.Sub(t0), time.Since(t1), err
	}
	reg, task, err := first("")
	if err != nil {
		return nil, err
	}
	ms := []Metric{{Name: "new module → first result, cold cache", Where: "startup",
		Mean: float64((reg + task).Microseconds()) / 1000, Unit: "ms", Goal: 1000, Lower: true}}
	if profile && cfg.ProfileDir != "" {
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			return nil, err
		}
		os.Setenv("RAYHOST_CPUPROFILE_DIR", cfg.ProfileDir) // inherited by the workers
		defer os.Unsetenv("RAYHOST_CPUPROFILE_DIR")
		f, err := os.Create(filepath.Join(cfg.ProfileDir, "host.pprof"))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	var total, regs, tasks []float64
	for range max(1, cfg.Runs) {
		reg, task, err := first("")
		if err != nil {
			return nil, err
		}
		milli := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		total, regs, tasks = append(total, milli(reg+task)), append(regs, milli(reg)), append(tasks, milli(task))
	}
	// The same module registered again on a restarted host (its data
	// directory kept): the host has the module's file, and may have kept
	// what it learnt of it.
	dir, err := os.MkdirTemp("", "rayhost-bench-restart-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if _, _, err := first(dir); err != nil {
		return nil, err
	}
	var again []float64
	for range max(1, cfg.Runs) {
		reg, task, err := first(dir)
		if err != nil {
			return nil, err
		}
		again = append(again, float64((reg+task).Microseconds())/1000)
	}
	for _, m := range []struct {
		name string
		v    []float64
		goal float64
	}{{"new module → first result, warm cache", total, 50}, {"  of which the registration", regs, 0}, {"  of which the first task", tasks, 0},
		{"registered again after a host restart → result", again, 0}} {
		mean, std := meanStd(m.v)
		x := Metric{Name: m.name, Where: "startup", Mean: mean, Std: std, Unit: "ms", Goal: m.goal, Lower: m.goal > 0}
		ms = append(ms, x)
	}
	return ms, nil
}
