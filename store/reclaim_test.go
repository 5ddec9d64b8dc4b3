package store

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rayhost/rayhost/internal/ids"
)

// hangGuard bounds a wait for something that must happen.
const hangGuard = 2 * time.Minute

// rounds opens cfg with its reclaim rounds reported on the returned
// channel.
func openWithRounds(t *testing.T, cfg BadgerConfig) (*Badger, <-chan ReclaimStats) {
	t.Helper()
	ch := make(chan ReclaimStats, 1024)
	cfg.OnReclaim = func(st ReclaimStats) {
		select {
		case ch <- st:
		default: // nobody is waiting for so many
		}
	}
	return openBadger(t, cfg), ch
}

// nextRound waits for a round that match accepts.
func nextRound(t *testing.T, rounds <-chan ReclaimStats, what string, match func(ReclaimStats) bool) ReclaimStats {
	t.Helper()
	guard := time.NewTimer(hangGuard)
	defer guard.Stop()
	for {
		select {
		case st := <-rounds:
			t.Logf("round %d: deleted %d, flushed %v, flattened %v, %d files rewritten, %.1f → %.1f MiB, %v, err %v",
				st.Round, st.Deleted, st.Flushed, st.Flattened, st.Rewritten, mib(st.Before), mib(st.After), st.Took, st.Err)
			if match(st) {
				return st
			}
		case <-guard.C:
			t.Fatalf("no reclaim round: %s", what)
		}
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func usage(t *testing.T, dir string) int64 {
	t.Helper()
	n, err := DirUsage(dir)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Deleted objects give their space back on disk: the store's files return
// to near their size before the objects were written, for large (chunked,
// value-log) objects and small (inline, LSM) ones. Rounds start on their
// own once ReclaimAfter bytes are deleted; the final check follows an
// explicit round. The tolerance is what a round cannot take back: the
// value-log file being written (a sixteenth of the quota, plus the last
// batch written to it) and 2 MiB of tables, manifest and memtable.
func TestBadgerReclaim(t *testing.T) {
	tests := []struct {
		name string
		size int
		n    int
	}{
		{"chunked 1 MiB", 1 << 20, 64},
		{"chunked 3 MiB", 3 << 20, 16},
		{"inline 4 KiB", 4 << 10, 5 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := chunkedConfig(dir)
			cfg.GCInterval = -1 // rounds only after deletes and when asked
			cfg.Quota = 128 << 20
			cfg.ReclaimAfter = 8 << 20
			b, rounds := openWithRounds(t, cfg)
			tolerance := vlogFileSize(cfg.Quota) + int64(b.flushAt) + 2<<20

			start := usage(t, dir)
			written := make([]ids.ObjectID, tt.n)
			data := content(1, tt.size)
			for i := range written {
				written[i] = newID()
				mustPut(t, b, written[i], Meta{Size: -1}, data)
			}
			full := usage(t, dir)
			total := int64(tt.size * tt.n)
			t.Logf("start %.1f MiB, %d objects of %d bytes written: %.1f MiB", mib(start), tt.n, tt.size, mib(full))
			if full-start < total/2 {
				t.Fatalf("%.1f MiB written took %.1f MiB on disk", mib(total), mib(full-start))
			}
			for _, id := range written {
				if err := b.Delete(t.Context(), id); err != nil {
					t.Fatal(err)
				}
			}
			// Rounds ran on their own, and one of them flushed and freed
			// space.
			nextRound(t, rounds, "after the deletes", func(st ReclaimStats) bool {
				return st.Flushed && st.After < st.Before
			})
			st, err := b.Reclaim(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("explicit round: %+v", st)
			if after := usage(t, dir); after > start+tolerance {
				t.Fatalf("after deleting everything and a reclaim round the store takes %.1f MiB, want at most %.1f (start %.1f + tolerance %.1f)",
					mib(after), mib(start+tolerance), mib(start), mib(tolerance))
			}
			// What is left is readable and writable.
			id, data := newID(), content(7, tt.size)
			mustPut(t, b, id, Meta{Size: -1}, data)
			mustGet(t, b, id, data)
		})
	}
}

// Objects that stay are kept by rounds: a round collects only what was
// deleted.
func TestBadgerReclaimKeepsLive(t *testing.T) {
	cfg := chunkedConfig(t.TempDir())
	cfg.GCInterval = -1
	cfg.Quota = 64 << 20 // small value-log files: rounds rewrite live chunks
	b, _ := openWithRounds(t, cfg)
	live := map[ids.ObjectID][]byte{}
	for i := range 48 {
		id, data := newID(), content(uint64(i), 1<<20+i)
		mustPut(t, b, id, Meta{Size: -1}, data)
		if i%3 == 0 {
			live[id] = data
			continue
		}
		if err := b.Delete(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	small, sdata := newID(), []byte("small")
	mustPut(t, b, small, Meta{Size: -1}, sdata)
	for range 3 {
		st, err := b.Reclaim(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("round: %+v", st)
	}
	checkAll(t, b, live)
	mustGet(t, b, small, sdata)
}

// Backpressure, then ErrStoreFull: a write that finds the store full
// while deleted objects wait for a round waits for one and succeeds;
// with nothing to reclaim it fails with ErrStoreFull at once. After the
// objects that filled it are deleted, about as many fit again.
func TestBadgerFullWaitsForReclaim(t *testing.T) {
	cfg := chunkedConfig(t.TempDir())
	cfg.GCInterval = -1
	cfg.ReclaimAfter = 1 << 40 // no round on its own: only the full store asks
	cfg.Quota = 32 << 20
	b, rounds := openWithRounds(t, cfg)

	first := fillUntilFull(t, b, 1<<20, 100)
	wantErr(t, "CheckSpace of a full store", b.CheckSpace(1<<20), ErrStoreFull)
	select {
	case st := <-rounds:
		t.Fatalf("a full store with nothing deleted ran a round: %+v", st)
	default:
	}
	for id := range first {
		if err := b.Delete(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	id, data := newID(), content(1, 1<<20)
	mustPut(t, b, id, Meta{Size: -1}, data) // waits for a round
	nextRound(t, rounds, "asked for by the full store", func(st ReclaimStats) bool { return st.Flushed })
	if err := b.Delete(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if err := b.CheckSpace(1 << 20); err != nil { // waits for a round too
		t.Fatalf("CheckSpace after the objects that filled the store were deleted: %v", err)
	}
	second := fillUntilFull(t, b, 1<<20, 100)
	if len(second) < len(first)-2 {
		t.Fatalf("%d objects filled the store, and after deleting them only %d fit again", len(first), len(second))
	}
	checkAll(t, b, second)
}

// Reclaim rounds run while goroutines put (whole and streamed), read and
// delete objects of every size, under a quota small enough that some
// writes wait for rounds: every read returns what was written, and every
// write succeeds or fails with ErrStoreFull.
func TestBadgerReclaimConcurrent(t *testing.T) {
	cfg := DefaultBadgerConfig(t.TempDir())
	cfg.GCInterval = time.Millisecond
	cfg.ReclaimAfter = 1 << 20
	cfg.Quota = 48 << 20
	b, _ := openWithRounds(t, cfg)
	ctx := t.Context()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			var kept []ids.ObjectID
			for it := range 24 {
				id := newID()
				n := []int{100, 3000, 70_000, 1 << 20, 2<<20 + 17}[(g+it)%5]
				data := content(uint64(g*1000+it), n)
				var err error
				if it%2 == 0 {
					err = writeAllErr(ctx, b, id, data)
				} else {
					err = b.Put(ctx, id, Meta{Size: -1}, data)
				}
				if errors.Is(err, ErrStoreFull) {
					continue
				}
				if err != nil {
					t.Errorf("write: %v", err)
					return
				}
				_, got, err := b.Get(ctx, id)
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("Get of %d bytes just written: %d bytes, %v", n, len(got), err)
					return
				}
				if it%4 == 0 {
					kept = append(kept, id)
					continue
				}
				if err := b.Delete(ctx, id); err != nil {
					t.Errorf("Delete: %v", err)
					return
				}
			}
			for _, id := range kept {
				if _, _, err := b.Get(ctx, id); err != nil {
					t.Errorf("Get of a kept object: %v", err)
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			if _, err := b.Reclaim(ctx); err != nil {
				t.Errorf("Reclaim: %v", err)
				return
			}
		}
	})
	wg.Wait()
}
