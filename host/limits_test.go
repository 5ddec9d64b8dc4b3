package host_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/testutil"
)

const limitsPkg = "./host/testdata/limits"

// callErr submits call and returns the error of getting its value.
func callErr(t *testing.T, c *client.Client, call client.Call) error {
	t.Helper()
	ctx := ctxFor(t, 2*time.Minute)
	refs, err := c.SubmitCall(ctx, call)
	if err != nil {
		return err
	}
	_, err = c.GetValues(ctx, refs)
	return err
}

func wantMessage(t *testing.T, what string, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded, want an error", what)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("%s: %v\nwant it to say %q", what, err, p)
		}
	}
	t.Logf("%s: %v", what, err)
}

// Issue 13 item 6: a guest that Puts past the store's quota, and an API Put
// past it, fail with a clear "store full" limit error (resource_exhausted);
// what is stored stays readable and a normal task afterwards succeeds.
func TestStoreFullHost(t *testing.T) {
	cfg := testutil.HostConfig(t)
	cfg.StoreQuota = 48 << 20
	h, err := host.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	c := client.New(h.Addr())
	mod := testutil.Register(t, c, limitsPkg)
	none := int32(0)
	ctx := ctxFor(t, 2*time.Minute)

	kept, err := c.Put(ctx, make([]byte, 8<<20))
	if err != nil {
		t.Fatalf("an 8 MiB Put within the quota: %v", err)
	}

	err = callErr(t, c, client.Call{Module: mod, Function: "put_mib", Args: []any{64}, MaxRetries: &none})
	wantMessage(t, "a guest Put of 64 MiB past a 48 MiB quota", err, "limit", "store: full")
	err = callErr(t, c, client.Call{Module: mod, Function: "result_mib", Args: []any{64}, MaxRetries: &none})
	wantMessage(t, "a result of 64 MiB past the quota", err, "limit", "store: full")
	if !errors.Is(err, client.ErrTooLarge) { // resource_exhausted
		t.Fatalf("a result past the quota: %v, want resource_exhausted", err)
	}

	_, err = c.Put(ctx, make([]byte, 64<<20))
	wantMessage(t, "an API Put of 64 MiB past the quota", err, "store: full")
	if !errors.Is(err, client.ErrTooLarge) { // resource_exhausted
		t.Fatalf("API Put past the quota: %v, want resource_exhausted", err)
	}

	var got []byte
	if err := c.Get(ctx, kept, &got); err != nil || len(got) != 8<<20 {
		t.Fatalf("reading an object of a full store: %d bytes, %v", len(got), err)
	}
	var n int
	mustCall(t, c, mod, "alloc_mib", &n, 1)
	if n != 1 {
		t.Fatalf("a normal task after the store filled returned %d", n)
	}

	// Small values are kept in memory and written behind: past the quota
	// they are refused too, before the host holds them (not kept in memory
	// instead). The store is then full to the brim: reads work, and so do
	// tasks whose results it need not store (a failure).
	err = callErr(t, c, client.Call{Module: mod, Function: "put_many", Args: []any{100_000, 64}, MaxRetries: &none})
	wantMessage(t, "100,000 guest Puts of 64 KiB past the quota", err, "limit", "store: full")
	// What is left after the last 64 KiB that fitted (how much depends on
	// when the store last measured its files) is taken by one-byte puts,
	// so that no result can fit.
	for i := 0; ; i++ {
		if _, err := c.Put(ctx, []byte{1}); err != nil {
			wantMessage(t, "filling the last bytes", err, "store: full")
			break
		}
		if i > 1_000_000 {
			t.Fatal("a million one-byte puts fitted in a full store")
		}
	}
	err = callErr(t, c, client.Call{Module: mod, Function: "alloc_mib", Args: []any{1}, MaxRetries: &none})
	wantMessage(t, "a task whose result a full store cannot take", err, "limit", "store: full")
	if err := c.Get(ctx, kept, &got); err != nil || len(got) != 8<<20 {
		t.Fatalf("reading an object of a full store: %d bytes, %v", len(got), err)
	}

	// Fill it to the brim with 1 MiB objects, then restart the host on it:
	// it starts, serves what it kept, and refuses writes past the quota
	// (Badger frees the unused tails of its preallocated files at close,
	// so a few may fit again).
	for {
		if _, err := c.Put(ctx, make([]byte, 1<<20)); err != nil {
			wantMessage(t, "filling the store", err, "store: full")
			break
		}
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h2, err := host.New(cfg)
	if err != nil {
		t.Fatalf("restarting a host whose store is at its quota: %v", err)
	}
	t.Cleanup(func() { _ = h2.Close() })
	c = client.New(h2.Addr())
	if err := c.Get(ctx, kept, &got); err != nil || len(got) != 8<<20 {
		t.Fatalf("reading an object after the restart: %d bytes, %v", len(got), err)
	}
	for i := 0; ; i++ {
		if _, err := c.Put(ctx, make([]byte, 1<<20)); err != nil {
			wantMessage(t, "filling the store after the restart", err, "store: full")
			t.Logf("%d more objects of 1 MiB fit after the restart", i)
			break
		}
		if i > 48 {
			t.Fatal("the restarted store took more than its quota")
		}
	}
	// To the last bytes: then registering a module, which needs no store
	// space, still works.
	for _, size := range []int{64 << 10, 4 << 10, 256, 16} {
		for {
			if _, err := c.Put(ctx, make([]byte, size)); err != nil {
				wantMessage(t, "filling the last bytes", err, "store: full")
				break
			}
		}
	}
	if _, err := c.RegisterModule(ctx, testutil.Guest(t, limitsPkg), ""); err != nil {
		t.Fatalf("registering a module on a host whose store is full: %v", err)
	}
}

// Issue 13 item 7: on a host started with maximums (here the figures of the
// issue: 3 s, 256 MiB), a call asking for more — over the API or from a
// guest — is refused with an error naming the flag that raises the cap;
// calls within the caps run.
func TestTaskCaps(t *testing.T) {
	h := testutil.StartHost(t, func(c *host.Config) {
		c.TaskTimeout, c.MaxTaskTimeout = 3*time.Second, 3*time.Second
		c.TaskMemoryLimit, c.MaxTaskMemoryLimit = 256<<20, 256<<20
	})
	c := client.New(h.Addr())
	mod := testutil.Register(t, c, limitsPkg)
	none := int32(0)

	err := callErr(t, c, client.Call{Module: mod, Function: "alloc_mib", Args: []any{1}, MemoryLimitBytes: 3 << 30})
	wantMessage(t, "an API call asking for 3 GiB", err, "above this host's maximum", "--max-task-memory-mib")
	if !errors.Is(err, client.ErrTooLarge) {
		t.Fatalf("%v: want resource_exhausted", err)
	}
	err = callErr(t, c, client.Call{Module: mod, Function: "alloc_mib", Args: []any{1}, Timeout: time.Hour})
	wantMessage(t, "an API call asking for a 1 h timeout", err, "above this host's maximum", "--max-task-timeout")

	// The guest: a child with MemoryLimit(3GiB), Timeout(1h) that
	// allocates 1,000 MiB.
	err = callErr(t, c, client.Call{Module: mod, Function: "capped_child", Args: []any{3072, 3600, 1000}, MaxRetries: &none})
	wantMessage(t, "a guest's child asking for 3 GiB and 1 h", err, "limit", "--max-task-memory-mib")
	err = callErr(t, c, client.Call{Module: mod, Function: "capped_child", Args: []any{128, 3600, 1}, MaxRetries: &none})
	wantMessage(t, "a guest's child asking for a 1 h timeout", err, "limit", "--max-task-timeout")
	err = callErr(t, c, client.Call{Module: mod, Function: "capped_child", Args: []any{256, 3, 1000}, MaxRetries: &none})
	wantMessage(t, "a child within the caps allocating 1,000 MiB of 256", err, "out of memory")

	var n int
	mustCall(t, c, mod, "capped_child", &n, 128, 2, 16)
	if n != 16 {
		t.Fatalf("a child within the caps returned %d", n)
	}

	cfg := testutil.HostConfig(t)
	cfg.TaskMemoryLimit, cfg.MaxTaskMemoryLimit = 1<<30, 256<<20
	if _, err := host.New(cfg); !errors.Is(err, host.ErrInvalidConfig) {
		t.Fatalf("a default above its maximum: %v, want ErrInvalidConfig", err)
	}
}

// wasmModule builds a module of one type, n functions () -> () with the
// same body, no exports.
func wasmModule(n int, body []byte) []byte {
	uleb := func(dst []byte, v int) []byte {
		for {
			b := byte(v & 0x7f)
			v >>= 7
			if v == 0 {
				return append(dst, b)
			}
			dst = append(dst, b|0x80)
		}
	}
	section := func(m []byte, id byte, content []byte) []byte {
		return append(uleb(append(m, id), len(content)), content...)
	}
	m := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	m = section(m, 1, []byte{1, 0x60, 0, 0})
	funcs := uleb(nil, n)
	for range n {
		funcs = append(funcs, 0)
	}
	m = section(m, 3, funcs)
	code := uleb(nil, n)
	for range n {
		code = append(uleb(code, len(body)), body...)
	}
	return section(m, 10, code)
}

// nestedBlocks is a function body of depth nested blocks: wazero's compile
// time grows super-linearly with it (issue 13: 240 KB compiled for 55 s).
func nestedBlocks(depth int) []byte {
	b := []byte{0} // no locals
	for range depth {
		b = append(b, 0x02, 0x40) // block (empty type)
	}
	for range depth {
		b = append(b, 0x0b)
	}
	return append(b, 0x0b)
}

func moduleFiles(t *testing.T, dataDir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dataDir, "modules"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// Issue 13 items 7 and 9: a module over the function-count or body-size
// cap is refused before compiling; one that compiles too slowly is cut off
// by the deadline; a refused module leaves no file; a name is re-pointed
// only with Replace; the number of modules is capped. A normal task runs
// afterwards.
func TestModuleCaps(t *testing.T) {
	var dataDir string
	h := testutil.StartHost(t, func(c *host.Config) {
		dataDir = c.DataDir
		// Go guests have about 3,000 functions, the largest body 29 KB.
		c.MaxModuleFunctions = 5000
		c.MaxFunctionBodyBytes = 64 << 10
	})
	c := client.New(h.Addr())
	ctx := ctxFor(t, 2*time.Minute)
	mod := testutil.Register(t, c, limitsPkg) // within the caps
	before := moduleFiles(t, dataDir)

	_, err := c.RegisterModule(ctx, wasmModule(5001, []byte{2, 0, 0x0b}), "")
	wantMessage(t, "a module of 5,001 functions", err, "5001 functions, the limit is 5000")
	_, err = c.RegisterModule(ctx, wasmModule(1, nestedBlocks(40_000)), "")
	wantMessage(t, "a function body of 120 KB", err, "function body of", "the limit is 65536")

	// Refused by the worker (another ABI version): no file left either.
	_, err = c.RegisterModule(ctx, moduleWithABI(2), "")
	wantMessage(t, "a module of ABI version 2", err, "ABI")
	if after := moduleFiles(t, dataDir); len(after) != len(before) {
		t.Fatalf("modules dir after refused uploads: %v, before: %v", after, before)
	}

	// Names: re-pointing needs Replace.
	if _, err := c.RegisterModule(ctx, testutil.Guest(t, limitsPkg), "app"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterModule(ctx, testutil.Guest(t, limitsPkg), "app"); err != nil {
		t.Fatalf("registering the same module under its name again: %v", err)
	}
	other := testutil.Guest(t, guestPkg)
	_, err = c.RegisterModule(ctx, other, "app")
	wantMessage(t, "re-pointing a name without Replace", err, "register with replace")
	if !errors.Is(err, client.ErrExists) {
		t.Fatalf("%v: want already_exists", err)
	}
	var n int
	mustCall(t, c, "app", "alloc_mib", &n, 1) // still the first module
	if _, err := c.RegisterModule(ctx, other, "app", client.Replace()); err != nil {
		t.Fatalf("re-pointing with Replace: %v", err)
	}
	var sum int
	mustCall(t, c, "app", "add", &sum, 1, 2) // the guest package's add
	mustCall(t, c, mod, "alloc_mib", &n, 1)
}

// A module within the size caps that compiles too slowly (300 KB of nested
// blocks: about 10,000 nested blocks compile in 0.36 s here and the time
// grows with the square of the depth, so 100,000 take tens of seconds) is
// cut off by the compile deadline: its worker is killed, the module refused
// and not kept; the host goes on running tasks.
func TestCompileDeadline(t *testing.T) {
	var dataDir string
	h := testutil.StartHost(t, func(c *host.Config) {
		dataDir = c.DataDir
		c.CompileTimeout = 3 * time.Second
	})
	c := client.New(h.Addr())
	ctx := ctxFor(t, 2*time.Minute)
	// Registered first (in the shared compilation cache: quick to load).
	mod := testutil.Register(t, c, limitsPkg)
	before := moduleFiles(t, dataDir)
	_, err := c.RegisterModule(ctx, wasmModule(1, nestedBlocks(100_000)), "")
	wantMessage(t, "a module of deeply nested blocks", err, "longer than 3s", "--compile-timeout")
	if !errors.Is(err, client.ErrInvalidArgument) {
		t.Fatalf("%v: want invalid_argument", err)
	}
	if after := moduleFiles(t, dataDir); len(after) != len(before) {
		t.Fatalf("modules dir after a refused upload: %v, before: %v", after, before)
	}
	var n int
	mustCall(t, c, mod, "alloc_mib", &n, 1)
}

func TestMaxModules(t *testing.T) {
	h := testutil.StartHost(t, func(c *host.Config) { c.MaxModules = 1 })
	c := client.New(h.Addr())
	ctx := ctxFor(t, 2*time.Minute)
	mod := testutil.Register(t, c, limitsPkg)
	testutil.Register(t, c, limitsPkg) // the same module again
	_, err := c.RegisterModule(ctx, testutil.Guest(t, guestPkg), "")
	wantMessage(t, "a second distinct module with MaxModules 1", err, "--max-modules")
	var n int
	mustCall(t, c, mod, "alloc_mib", &n, 1)
}

// Issue 13 item 10: drivers past MaxDrivers wait for a slot instead of
// taking the workers tasks need; a normal task runs while they wait, and a
// waiting driver starts when a running one ends.
func TestDriverCap(t *testing.T) {
	h := testutil.StartHost(t, func(c *host.Config) {
		c.NumCPUs, c.Workers, c.MaxWorkers = 2, 2, 4 // MaxDrivers: 4 - 2 = 2
		c.MaxDriversPerClient = 2                    // this test is one client
	})
	c := client.New(h.Addr())
	mod := testutil.Register(t, c, limitsPkg)

	const drivers, maxDrivers = 5, 2
	var running, peak atomic.Int32
	started := make(chan int, drivers)
	cancels := make([]context.CancelFunc, drivers)
	ended := make([]chan struct{}, drivers)
	var wg sync.WaitGroup
	for i := range drivers {
		ctx, cancel := context.WithCancel(ctxFor(t, 3*time.Minute))
		cancels[i], ended[i] = cancel, make(chan struct{})
		wg.Go(func() {
			defer close(ended[i])
			var once sync.Once
			didStart := false
			err := c.Run(ctx, mod, func(l client.LogLine) {
				if strings.Contains(string(l.Data), "driver started") {
					once.Do(func() {
						didStart = true
						n := running.Add(1)
						for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
						}
						started <- i
					})
				}
			})
			if didStart {
				running.Add(-1)
			}
			if ctx.Err() == nil {
				t.Errorf("driver %d ended before it was cancelled: %v", i, err)
			}
		})
	}
	defer func() {
		for _, cancel := range cancels {
			cancel()
		}
		wg.Wait()
	}()
	first := <-started
	<-started
	// Five drivers asked; two run, three wait: the tasks still get workers.
	none := int32(0)
	ctx := ctxFor(t, 2*time.Minute)
	var calls []client.Call
	for range 4 {
		calls = append(calls, client.Call{Module: mod, Function: "alloc_mib", Args: []any{1}, MaxRetries: &none})
	}
	refs, err := c.SubmitBatch(ctx, calls)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		var n int
		if err := c.Get(ctx, r[0], &n); err != nil || n != 1 {
			t.Fatalf("a task while drivers wait: %d, %v", n, err)
		}
	}
	if p := peak.Load(); p > maxDrivers {
		t.Fatalf("%d drivers ran at once, MaxDrivers is %d", p, maxDrivers)
	}
	// Ending a driver lets a waiting one start; no more than two ever run.
	cancels[first]()
	<-ended[first]
	<-started
	if p := peak.Load(); p > maxDrivers {
		t.Fatalf("%d drivers ran at once, MaxDrivers is %d", p, maxDrivers)
	}
}

// waitRunningN waits until exactly want tasks of function fn run (their
// latest event), and returns the IDs of those running and waiting.
// More than most running at any time fails the test.
func waitRunningN(t *testing.T, c *client.Client, fn string, want, most int) (running, waiting []string) {
	t.Helper()
	ctx := ctxFor(t, 2*time.Minute)
	for {
		evs, _, err := c.ListTasks(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		last := map[string]string{}
		for _, e := range evs {
			if e.Function == fn {
				last[e.TaskID] = e.State
			}
		}
		running, waiting = nil, nil
		for id, st := range last {
			switch st {
			case "running":
				running = append(running, id)
			case "scheduled", "pending_resources", "pending_args":
				waiting = append(waiting, id)
			}
		}
		if len(running) == want {
			return running, waiting
		}
		if len(running) > most {
			t.Fatalf("%d tasks of %s run, at most %d may", len(running), fn, most)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d tasks of %s run, want %d: %v", len(running), fn, want, ctx.Err())
		case <-time.After(20 * time.Millisecond): // polling the host's state; a hang guard above
		}
	}
}

// Issue 13 item 7: a host-wide guest memory budget. With 512 MiB for
// guests and 256 MiB per task, two tasks run and the third waits (though
// CPUs and workers are free) until one ends; a child that can never fit
// beside its blocked parent fails with a clear limit error instead of
// hanging; a normal task runs afterwards.
func TestGuestMemoryBudget(t *testing.T) {
	h := testutil.StartHost(t, func(c *host.Config) {
		c.NumCPUs, c.Workers = 4, 4
		c.TaskMemoryLimit, c.MaxTaskMemoryLimit, c.GuestMemoryBudget = 256<<20, 512<<20, 512<<20
	})
	c := client.New(h.Addr())
	mod := testutil.Register(t, c, limitsPkg)
	ctx := ctxFor(t, 2*time.Minute)
	none := int32(0)
	var refs []client.ObjectRef
	for range 3 {
		r, err := c.SubmitCall(ctx, client.Call{Module: mod, Function: "block", MaxRetries: &none})
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, r[0])
	}
	running, waiting := waitRunningN(t, c, "block", 2, 2)
	if len(waiting) != 1 {
		t.Fatalf("%d tasks wait, want 1", len(waiting))
	}
	refOf := func(task string) client.ObjectRef {
		for _, r := range refs {
			if strings.HasPrefix(r.ID, task) {
				return r
			}
		}
		t.Fatalf("no ref of task %s", task)
		return client.ObjectRef{}
	}
	// Ending a running one lets the waiting one run.
	if err := c.Cancel(ctx, refOf(running[0]), true, false); err != nil {
		t.Fatal(err)
	}
	for {
		now, _ := waitRunningN(t, c, "block", 2, 2)
		if slices.Contains(now, waiting[0]) {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling; the hang guard is waitRunningN's
	}
	for _, r := range refs {
		if err := c.Cancel(ctx, r, true, false); err != nil {
			t.Fatal(err)
		}
	}
	waitRunningN(t, c, "block", 0, 2)

	// A parent (256 MiB) waits for a child of 512 MiB: it can never fit.
	err := callErr(t, c, client.Call{Module: mod, Function: "capped_child", Args: []any{512, 60, 1}, MaxRetries: &none})
	wantMessage(t, "a child that cannot fit beside its parent", err, "guest memory budget", "--guest-memory-budget-mib")
	var n int
	mustCall(t, c, mod, "alloc_mib", &n, 1)

	cfg := testutil.HostConfig(t)
	cfg.GuestMemoryBudget = 128 << 20
	if _, err := host.New(cfg); !errors.Is(err, host.ErrInvalidConfig) {
		t.Fatalf("a budget below MaxTaskMemoryLimit: %v, want ErrInvalidConfig", err)
	}
}

// startDriver starts a driver of mod through c and returns a channel that
// gets a value when it prints that it started, and its cancel function.
func startDriver(t *testing.T, c *client.Client, mod string, wg *sync.WaitGroup) (started chan struct{}, cancel context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctxFor(t, 3*time.Minute))
	started = make(chan struct{}, 1)
	wg.Go(func() {
		var once sync.Once
		_ = c.Run(ctx, mod, func(l client.LogLine) {
			if strings.Contains(string(l.Data), "driver started") {
				once.Do(func() { started <- struct{}{} })
			}
		})
	})
	return started, cancel
}

// Issue 13 item 10, per client: one client (an IP address) holds at most
// MaxDriversPerClient of the driver slots; another client's driver starts
// while the first one's third driver waits.
func TestDriverCapPerClient(t *testing.T) {
	h := testutil.StartHost(t, func(c *host.Config) {
		c.NumCPUs, c.Workers, c.MaxWorkers = 2, 2, 5 // MaxDrivers: 3
		c.MaxDriversPerClient = 2
	})
	a := client.New(h.Addr())
	mod := testutil.Register(t, a, limitsPkg)
	// Client b connects from another loopback address.
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	b := client.New(h.Addr(), client.WithHTTPClient(&http.Client{Transport: &http.Transport{DialContext: d.DialContext}}))

	var wg sync.WaitGroup
	var cancels []context.CancelFunc
	defer func() {
		for _, cancel := range cancels {
			cancel()
		}
		wg.Wait()
	}()
	var aStarted []chan struct{}
	for range 3 {
		s, cancel := startDriver(t, a, mod, &wg)
		aStarted, cancels = append(aStarted, s), append(cancels, cancel)
	}
	// Two of a's drivers start (which two is up to the host).
	ctx := ctxFor(t, 2*time.Minute)
	got := 0
	waitingA := -1
	for got < 2 {
		select {
		case <-aStarted[0]:
			aStarted[0] = nil
		case <-aStarted[1]:
			aStarted[1] = nil
		case <-aStarted[2]:
			aStarted[2] = nil
		case <-ctx.Done():
			t.Fatal("a's first two drivers did not start")
		}
		got++
	}
	for i, s := range aStarted {
		if s != nil {
			waitingA = i
		}
	}
	// b's driver takes the third slot, ahead of a's third driver.
	bStarted, cancel := startDriver(t, b, mod, &wg)
	cancels = append(cancels, cancel)
	select {
	case <-bStarted:
	case <-aStarted[waitingA]:
		t.Fatal("a's third driver started: a client took more than MaxDriversPerClient slots")
	case <-ctx.Done():
		t.Fatal("b's driver did not start while a held its share")
	}
	var n int
	mustCall(t, a, mod, "alloc_mib", &n, 1)
}
