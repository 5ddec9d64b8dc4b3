package objdir

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

// gatedStore is a Memory store whose Puts wait for the gate, and which
// reports the first time it refuses space.
type gatedStore struct {
	*store.Memory
	gate    chan struct{}
	full    chan struct{}
	once    sync.Once
	entered chan struct{} // closed when the first Put is at the gate
	in      sync.Once
}

func newGatedStore(quota int64) *gatedStore {
	return &gatedStore{Memory: store.NewMemoryQuota(quota), gate: make(chan struct{}), full: make(chan struct{}),
		entered: make(chan struct{})}
}

func (g *gatedStore) Put(ctx context.Context, id ids.ObjectID, meta store.Meta, data []byte) error {
	g.in.Do(func() { close(g.entered) })
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Memory.Put(ctx, id, meta, data)
}

func (g *gatedStore) CheckSpace(n int64) error {
	err := g.Memory.CheckSpace(n)
	if err != nil {
		g.once.Do(func() { close(g.full) })
	}
	return err
}

// waitClosed waits for ch, failing the test at the hang guard.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(hangGuard):
		t.Fatalf("waited in vain for %s", what)
	}
}

// TestSealWaitsForFreedBehind: a small value that would not fit with what
// is queued behind, when what is queued is on its way out (freed while
// being written: its delete follows), is taken once the write-behind has
// caught up — not refused as if the store were full.
func TestSealWaitsForFreedBehind(t *testing.T) {
	st := newGatedStore(12)
	d := newDir(t, st, func(c *Config) { c.InlineLimit = 1024 })
	task := ids.NewTaskID()
	gone, kept := task.Return(0), task.Return(1)
	if err := d.Seal(ctxFor(t), gone, rawValue(8, 'g')); err != nil {
		t.Fatal(err)
	}
	// Freed while its write is under way (a value freed before its turn
	// is not written at all: TestSmallFreedBeforeWritten).
	waitClosed(t, st.entered, "the write-behind to take the value")
	d.Free([]ids.ObjectID{gone})
	sealed := make(chan error, 1)
	go func() { sealed <- d.Seal(ctxFor(t), kept, rawValue(8, 'k')) }()
	waitClosed(t, st.full, "the seal to find the store full with what is queued")
	close(st.gate) // the write-behind goes on: the put, then the delete
	if err := <-sealed; err != nil {
		t.Fatalf("a value that fits once the freed one is deleted: %v", err)
	}
	d.Close()
	if n := st.Len(); n != 1 {
		t.Fatalf("the store holds %d objects, want only the kept one", n)
	}
	if v := getOne(t, d, kept); string(v.Data) != "kkkkkkkk" {
		t.Fatalf("the kept value reads %q", v.Data)
	}
}

// TestSealWaitsForTheQueue: small values written behind never queue more
// than maxQueued bytes: past it a seal waits for the store to take what is
// queued (backpressure), then goes on.
func TestSealWaitsForTheQueue(t *testing.T) {
	st := newGatedStore(0)
	const size = 1 << 20
	d := newDir(t, st, func(c *Config) { c.InlineLimit, c.CacheBytes = 2*size, 1<<40 })
	n := maxQueued/size + 8
	task := ids.NewTaskID()
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if err := d.Seal(ctxFor(t), task.Return(i), rawValue(size, byte(i))); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	deadline := time.Now().Add(hangGuard)
	for {
		d.mu.Lock()
		q := d.queued
		d.mu.Unlock()
		if q > maxQueued {
			t.Fatalf("%d bytes queued behind, past the bound of %d", q, maxQueued)
		}
		if q > maxQueued-size {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the queue never filled")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("all %d seals of 1 MiB went through with the store stalled (%v)", n, err)
	default:
	}
	close(st.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	d.Close()
	if got := st.Len(); got != n {
		t.Fatalf("the store holds %d objects, want %d", got, n)
	}
}
