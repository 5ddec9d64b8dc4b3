package store

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rayhost/rayhost/internal/ids"
)

// fillUntilFull puts objects of size bytes until a Put fails, which must be
// with ErrStoreFull. It returns the objects stored.
func fillUntilFull(t *testing.T, s Store, size, limit int) map[ids.ObjectID][]byte {
	t.Helper()
	stored := map[ids.ObjectID][]byte{}
	for i := range limit {
		id, data := newID(), content(uint64(i), size)
		err := s.Put(t.Context(), id, Meta{Size: -1}, data)
		if err != nil {
			wantErr(t, "Put past the quota", err, ErrStoreFull)
			t.Logf("full after %d objects of %d bytes: %v", len(stored), size, err)
			return stored
		}
		stored[id] = data
	}
	t.Fatalf("%d puts of %d bytes never filled the store", limit, size)
	return nil
}

func checkAll(t *testing.T, s Store, objs map[ids.ObjectID][]byte) {
	t.Helper()
	for id, data := range objs {
		mustGet(t, s, id, data)
	}
}

// A store at its quota refuses writes (Put, streaming writes, inline
// values) with ErrStoreFull, keeps serving reads, and opens again.
func TestBadgerQuota(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultBadgerConfig(dir)
	cfg.Quota = 8 << 20
	cfg.Logger = testLogger(t)
	b, err := OpenBadger(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stored := fillUntilFull(t, b, 1<<20, 100)
	if len(stored) == 0 {
		t.Fatal("the quota refused the first object")
	}
	checkAll(t, b, stored)
	wantErr(t, "CheckSpace", b.CheckSpace(1<<20), ErrStoreFull)

	// A streaming write past the quota fails in Write or Commit, and leaves
	// nothing behind.
	id := newID()
	w, err := b.Create(t.Context(), id, Meta{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	var werr error
	for range 16 {
		if _, werr = w.Write(content(7, 1<<20)); werr != nil {
			break
		}
	}
	if werr == nil {
		werr = w.Commit(t.Context())
	}
	wantErr(t, "streaming write past the quota", werr, ErrStoreFull)
	_ = w.Abort()
	if _, err := b.Stat(t.Context(), id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stat of the refused streaming object: %v, want ErrNotFound", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopen at the quota: opens, reads, refuses writes past the quota
	// (Badger frees the unused tails of its preallocated files at close,
	// so one more object may fit).
	b2 := openBadger(t, cfg)
	checkAll(t, b2, stored)
	more := fillUntilFull(t, b2, 1<<20, 8)
	if len(more) > 2 {
		t.Fatalf("%d more objects of 1 MiB fit after reopening a full store", len(more))
	}
	checkAll(t, b2, more)

	// Deleting frees room: a delete itself always works when full, and a
	// write that finds the store full then waits for a reclaim round,
	// which gives the space back.
	for id := range stored {
		if err := b2.Delete(t.Context(), id); err != nil {
			t.Fatalf("Delete when full: %v", err)
		}
	}
	id, data := newID(), content(9, 1<<20)
	mustPut(t, b2, id, Meta{Size: -1}, data)
	mustGet(t, b2, id, data)
	checkAll(t, b2, more)
}

// The free-space reserve, with an injected probe: a write that would leave
// less than the reserve fails with ErrStoreFull; reads keep working; writes
// work again once the filesystem has room.
func TestBadgerReserve(t *testing.T) {
	var free atomic.Int64
	free.Store(100 << 30)
	cfg := DefaultBadgerConfig(t.TempDir())
	cfg.Reserve = 1 << 30
	cfg.FreeSpace = func(string) (uint64, uint64, error) { return uint64(free.Load()), 1 << 40, nil }
	b := openBadger(t, cfg)

	id, data := newID(), content(1, 3<<20)
	mustPut(t, b, id, Meta{Size: -1}, data)
	small := newID()
	mustPut(t, b, small, Meta{Size: -1}, []byte("small"))

	free.Store(1<<30 + 2<<20) // 2 MiB above the reserve
	err := b.Put(t.Context(), newID(), Meta{Size: -1}, content(2, 3<<20))
	wantErr(t, "Put into the reserve", err, ErrStoreFull)
	wantErr(t, "CheckSpace into the reserve", b.CheckSpace(3<<20), ErrStoreFull)
	if err := b.CheckSpace(1 << 20); err != nil {
		t.Fatalf("CheckSpace of 1 MiB with 2 MiB above the reserve: %v", err)
	}
	mustGet(t, b, id, data)
	mustGet(t, b, small, []byte("small"))

	free.Store(1 << 30) // at the reserve: even a small value is refused
	err = b.Put(t.Context(), newID(), Meta{Size: -1}, []byte("x"))
	wantErr(t, "small Put at the reserve", err, ErrStoreFull)

	free.Store(100 << 30)
	mustPut(t, b, newID(), Meta{Size: -1}, content(3, 3<<20))
}

// Small writes far from the reserve share a probe of the free space (a
// statfs each was a tenth of a host's CPU); large writes, and small ones
// once the last probe is near the reserve, probe every time.
func TestBadgerReserveProbes(t *testing.T) {
	var free, probes atomic.Int64
	free.Store(100 << 30)
	cfg := DefaultBadgerConfig(t.TempDir())
	cfg.Reserve = 1 << 30
	cfg.FreeSpace = func(string) (uint64, uint64, error) {
		probes.Add(1)
		return uint64(free.Load()), 1 << 40, nil
	}
	b := openBadger(t, cfg)
	probes.Store(0)
	for i := range 200 {
		mustPut(t, b, newID(), Meta{Size: -1}, content(uint64(i), 100))
	}
	if n := probes.Load(); n > 100 {
		t.Errorf("200 small puts far from the reserve probed %d times", n)
	}
	probes.Store(0)
	for i := range 5 {
		mustPut(t, b, newID(), Meta{Size: -1}, content(uint64(i), probeSmall))
	}
	if n := probes.Load(); n < 5 {
		t.Errorf("5 puts of %d bytes probed %d times, want each", probeSmall, n)
	}
	// Near the reserve (as a probe finds: a cached one serves for at most
	// probeEvery), every write probes.
	free.Store(1<<30 + probeMargin)
	if err := b.CheckSpace(probeSmall); err != nil {
		t.Fatal(err)
	}
	probes.Store(0)
	for i := range 5 {
		mustPut(t, b, newID(), Meta{Size: -1}, content(uint64(i), 100))
	}
	if n := probes.Load(); n < 5 {
		t.Errorf("5 small puts near the reserve probed %d times, want each", n)
	}
	free.Store(1 << 30)
	err := b.Put(t.Context(), newID(), Meta{Size: -1}, []byte("x"))
	wantErr(t, "small Put at the reserve", err, ErrStoreFull)
}

// A shared probe counts the bytes in flight when it was made: once they
// land, small writes it serves cannot go into the reserve (a large write
// half written at the probe, then done, must not make its bytes look free
// again). Found by an attack review.
func TestBadgerReserveProbeAfterInflight(t *testing.T) {
	const reserve = 1 << 30
	var free, probes atomic.Int64
	free.Store(reserve + 512<<20 + 10<<20)
	cfg := DefaultBadgerConfig(t.TempDir())
	cfg.Reserve = reserve
	cfg.GCInterval = -1
	cfg.FreeSpace = func(string) (uint64, uint64, error) {
		probes.Add(1)
		return uint64(free.Load()), 1 << 40, nil
	}
	s := openBadger(t, cfg).space
	const large = 512 << 20
	if err := s.admit(large); err != nil {
		t.Fatal(err)
	}
	free.Add(-large / 2) // half written when a small write probes
	if err := s.admit(100); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("a small write while the large one is in flight: %v, want ErrStoreFull", err)
	}
	free.Add(-large / 2) // all written: 10 MiB above the reserve
	s.done(large)
	for range 600 { // 30 MiB of small writes
		const n = 50 << 10
		if err := s.admit(n); err != nil {
			break
		}
		free.Add(-n)
		s.done(n)
	}
	if f := free.Load(); f < reserve {
		t.Fatalf("small writes went %d bytes into the reserve (%d probes)", reserve-f, probes.Load())
	}
}

// Concurrent writers cannot all take the last bytes above the reserve:
// admitted bytes not yet written count against the free space.
func TestBadgerReserveConcurrent(t *testing.T) {
	const chunk = 4 << 20
	dir := t.TempDir()
	var base atomic.Int64 // 0 until armed
	cfg := DefaultBadgerConfig(dir)
	cfg.Reserve = 1 << 30
	// Once armed, the filesystem has room for 10 objects above the reserve
	// and shrinks by what the store's files take, as a real one would.
	cfg.FreeSpace = func(string) (uint64, uint64, error) {
		if base.Load() == 0 {
			return 100 << 30, 1 << 40, nil
		}
		used, err := DirUsage(dir)
		return uint64(base.Load() - used), 1 << 40, err
	}
	b := openBadger(t, cfg)
	used, err := DirUsage(dir)
	if err != nil {
		t.Fatal(err)
	}
	base.Store(1<<30 + 10*(chunk+1024) + used)
	var wg sync.WaitGroup
	var ok, full atomic.Int32
	for i := range 32 {
		wg.Go(func() {
			err := b.Put(t.Context(), newID(), Meta{Size: -1}, content(uint64(i), chunk))
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrStoreFull):
				full.Add(1)
			default:
				t.Errorf("Put: %v", err)
			}
		})
	}
	wg.Wait()
	t.Logf("%d stored, %d refused", ok.Load(), full.Load())
	if ok.Load() > 10 || ok.Load() == 0 {
		t.Fatalf("%d objects stored, want 1..10 (room for 10 above the reserve)", ok.Load())
	}
}

// A filesystem too full for Badger to open gives a clean ErrStoreFull.
func TestBadgerOpenNoSpace(t *testing.T) {
	cfg := DefaultBadgerConfig(t.TempDir())
	cfg.FreeSpace = func(string) (uint64, uint64, error) { return 1 << 20, 1 << 40, nil }
	b, err := OpenBadger(cfg)
	if err == nil {
		_ = b.Close()
	}
	wantErr(t, "OpenBadger on a full filesystem", err, ErrStoreFull)
}

func TestBadgerSpaceConfig(t *testing.T) {
	for name, modify := range map[string]func(*BadgerConfig){
		"negative-quota": func(c *BadgerConfig) { c.Quota = -1 },
		"tiny-reserve":   func(c *BadgerConfig) { c.Reserve = MinReserve - 1 },
		"neg-reserve":    func(c *BadgerConfig) { c.Reserve = -1 },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultBadgerConfig(t.TempDir())
			modify(&cfg)
			b, err := OpenBadger(cfg)
			if err == nil {
				_ = b.Close()
			}
			wantErr(t, "OpenBadger", err, ErrInvalidConfig)
		})
	}
	if got := DefaultReserve(1 << 40); got != MaxDefaultReserve {
		t.Errorf("DefaultReserve(1 TiB) = %d, want %d", got, MaxDefaultReserve)
	}
	if got := DefaultReserve(10 << 30); got != (10<<30)/20 {
		t.Errorf("DefaultReserve(10 GiB) = %d, want 5%%", got)
	}
	if got := DefaultReserve(100 << 20); got != MinReserve {
		t.Errorf("DefaultReserve(100 MiB) = %d, want MinReserve", got)
	}
}

// The real probe returns sane numbers.
func TestFreeSpaceProbe(t *testing.T) {
	free, total, err := FreeSpace(t.TempDir())
	if err != nil {
		t.Skipf("no free-space probe on this OS: %v", err)
	}
	t.Logf("free %d of %d bytes", free, total)
	if total == 0 || free > total {
		t.Fatalf("FreeSpace = free %d, total %d", free, total)
	}
	if _, _, err := FreeSpace(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("FreeSpace of a missing directory succeeded")
	}
}

func TestMemoryQuota(t *testing.T) {
	m := NewMemoryQuota(4 << 20)
	stored := fillUntilFull(t, m, 1<<20, 100)
	if len(stored) != 4 {
		t.Fatalf("%d objects of 1 MiB fit a 4 MiB quota, want 4", len(stored))
	}
	checkAll(t, m, stored)
	wantErr(t, "CheckSpace", m.CheckSpace(1), ErrStoreFull)
	w, err := m.Create(t.Context(), newID(), Meta{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Write(make([]byte, 1<<20))
	wantErr(t, "streaming write past the quota", err, ErrStoreFull)
	for id := range stored {
		if err := m.Delete(t.Context(), id); err != nil {
			t.Fatal(err)
		}
		break
	}
	mustPut(t, m, newID(), Meta{Size: -1}, make([]byte, 1<<20))
}

// A real full filesystem (a small tmpfs): the store refuses writes with
// ErrStoreFull at the reserve, never crashes (a SIGBUS would kill the test
// binary), serves reads and opens again; and a filesystem too full for
// Badger to open fails OpenBadger cleanly. Needs root to mount.
func TestBadgerTmpfsFull(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs")
	}
	dir := t.TempDir()
	// 200 MiB: the store may write about 70 MiB above the 128 MiB reserve.
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v: %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	cfg := DefaultBadgerConfig(filepath.Join(dir, "objects"))
	cfg.Logger = testLogger(t)
	b, err := OpenBadger(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	stored := map[ids.ObjectID][]byte{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 100 {
				id, data := newID(), content(uint64(w*1000+i), 3<<20)
				err := b.Put(t.Context(), id, Meta{Size: -1}, data)
				if err != nil {
					if !errors.Is(err, ErrStoreFull) {
						t.Errorf("Put: %v, want ErrStoreFull", err)
					}
					return
				}
				mu.Lock()
				stored[id] = data
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	free, _, _ := FreeSpace(dir)
	t.Logf("%d objects of 3 MiB stored; %d bytes left free", len(stored), free)
	if len(stored) == 0 {
		t.Fatal("nothing fit")
	}
	checkAll(t, b, stored)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openBadger(t, cfg)
	checkAll(t, b, stored)
	if more := fillUntilFull(t, b, 3<<20, 8); len(more) > 2 {
		t.Fatalf("%d more objects of 3 MiB fit after reopening a full store", len(more))
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// Someone else fills the filesystem: OpenBadger refuses cleanly.
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	_ = f.Close()
	b3, err := OpenBadger(cfg)
	if err == nil {
		_ = b3.Close()
	}
	wantErr(t, "OpenBadger on a full filesystem", err, ErrStoreFull)
}
