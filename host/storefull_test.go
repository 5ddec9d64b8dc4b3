package host_test

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/testutil"
	"github.com/rayhost/rayhost/store"
)

// held is what the limits guest's hold_until_full reports.
type held struct {
	Held    int    `json:"held"`
	Err     string `json:"err"`
	Kind    string `json:"kind"`
	ReadOK  bool   `json:"read_ok"`
	TaskErr string `json:"task_err"`
}

// Issue 16: a driver that holds refs to more than the quota gets a "store
// full" limit error on the next Put, the host keeps serving (what it holds
// reads back, the API answers, a task runs or is refused with the same
// error), and after the driver exits the space is back: the store's files
// shrink to near their size at the start, and a second driver holds as
// much as the first.
func TestStoreFullDriverExits(t *testing.T) {
	const quota = 64 << 20
	cfg := testutil.HostConfig(t)
	cfg.StoreQuota = quota
	h, err := host.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	c := client.New(h.Addr())
	mod := testutil.Register(t, c, limitsPkg)
	dir := filepath.Join(cfg.DataDir, "objects")
	start := diskUsage(t, dir)
	ctx := ctxFor(t, testutil.HangGuard)

	run := func(what string) held {
		t.Helper()
		var r held
		mustCall(t, c, mod, "hold_until_full", &r, 1, 2*quota>>20)
		t.Logf("%s: %+v; store %.1f MiB", what, r, float64(diskUsage(t, dir))/(1<<20))
		if r.Kind != "limit" || !strings.Contains(r.Err, "store: full") {
			t.Fatalf("%s: the Put past the quota failed with %q (%s), want a store full limit error", what, r.Err, r.Kind)
		}
		if r.Held < quota>>20/2 {
			t.Fatalf("%s: only %d values of 1 MiB fitted in a quota of %d MiB", what, r.Held, quota>>20)
		}
		if !r.ReadOK {
			t.Fatalf("%s: the values held did not all read back once the store was full", what)
		}
		// A small result may still fit, or be refused as the Put was: never
		// anything else.
		if r.TaskErr != "" && !strings.Contains(r.TaskErr, "store: full") {
			t.Fatalf("%s: a task run while the store was full: %s", what, r.TaskErr)
		}
		if _, err := c.Health(ctx); err != nil {
			t.Fatalf("%s: the host does not answer: %v", what, err)
		}
		return r
	}
	first := run("first driver")

	// Its refs were released as it ended: the frees reach the store and
	// reclaim rounds give the space back (rounds start after every eighth
	// of the quota deleted; what is left below that waits for the next
	// round, and the value-log file being written is never collected).
	tolerance := int64(quota/8 + quota/16 + quota/16 + 2<<20)
	eventually(t, testutil.HangGuard, func() bool { return diskUsage(t, dir) <= start+tolerance },
		"the store's files did not shrink back after the driver ended")
	t.Logf("after the first driver: store %.1f MiB (%.1f at the start)", float64(diskUsage(t, dir))/(1<<20), float64(start)/(1<<20))

	// A write that finds the store full waits for a round that may make
	// room: a second driver holds about as much.
	second := run("second driver")
	if second.Held < first.Held-2 {
		t.Fatalf("the first driver held %d values of 1 MiB, the second only %d: the space did not come back", first.Held, second.Held)
	}
	eventually(t, testutil.HangGuard, func() bool { return diskUsage(t, dir) <= start+tolerance },
		"the store's files did not shrink back after the second driver ended")
	if _, err := c.Put(ctx, make([]byte, 1<<20)); err != nil {
		t.Fatalf("an API Put of 1 MiB after the drivers ended: %v", err)
	}
}

// diskUsage is the space the files under dir take on disk (allocated
// blocks: Badger's files are sparse), as the store's quota counts it.
func diskUsage(t *testing.T, dir string) int64 {
	t.Helper()
	n, err := store.DirUsage(dir)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The long-lived driver (bench/longlived) in small: Put + task + Get of 64
// KiB values, its refs dropped as it goes, pushes four times the quota
// through a 64 MiB store without ever finding it full. (The long form, 1
// MiB values for 10 minutes on a 1 GiB quota, is in docs/BENCHMARKS.md.
// Values are 64 KiB here because the SDK sends releases in batches of
// 256 refs: 256 dropped refs of 1 MiB would be four times this quota.)
func TestLongLivedDriverFitsQuota(t *testing.T) {
	const quota = 64 << 20
	h := testutil.StartHost(t, func(c *host.Config) { c.StoreQuota = quota })
	c := client.New(h.Addr())
	mod := testutil.Register(t, c, "./bench/longlived")
	const kib = 64
	iterations := 4 * quota / (2 * kib << 10) // a put and a result each
	var out strings.Builder
	env := map[string]string{"LONGLIVED_KIB": strconv.Itoa(kib), "LONGLIVED_ITERATIONS": strconv.Itoa(iterations)}
	if err := c.Run(ctxFor(t, testutil.HangGuard), mod, func(l client.LogLine) { out.Write(l.Data) }, client.WithGrants(nil, env)); err != nil {
		t.Fatalf("the driver: %v\n%s", err, out.String())
	}
	t.Log(out.String())
	if want := fmt.Sprintf("done: %d iterations", iterations); !strings.Contains(out.String(), want) {
		t.Fatalf("the driver's output does not say %q", want)
	}
}
