package host_test

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/testutil"
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
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed by a compaction meanwhile
		}
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		} else {
			n += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
