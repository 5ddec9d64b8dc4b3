package objdir

import (
	"slices"
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

// TestFree: a freed object leaves memory and the store, small or large,
// and a read of it says it was freed (not lost, not unknown).
func TestFree(t *testing.T) {
	st := store.NewMemory()
	d := newDir(t, st, func(c *Config) { c.InlineLimit = 16 })
	ctx := ctxFor(t)
	small, large, kept := ids.NewTaskID().Return(0), ids.NewTaskID().Return(0), ids.NewTaskID().Put(0)
	for _, s := range []struct {
		id ids.ObjectID
		v  abi.Value
	}{{small, jsonValue("1")}, {large, rawValue(100, 'x')}, {kept, jsonValue("2")}} {
		if err := d.Seal(ctx, s.id, s.v); err != nil {
			t.Fatal(err)
		}
	}
	d.Free([]ids.ObjectID{small, large})
	for _, id := range []ids.ObjectID{small, large} {
		wantError(t, getOne(t, d, id), abi.ErrorObjectFreed)
		if d.Known(ctx, id) {
			t.Fatalf("%s is known after Free", id)
		}
	}
	if v := getOne(t, d, kept); string(v.Data) != "2" {
		t.Fatalf("the object not freed reads %q", v.Data)
	}
	if s := d.Stats(); s.Objects != 1 || s.MemBytes != 1+objectOverhead || s.Freed != 2 {
		t.Fatalf("stats %+v, want 1 object of 1 byte (and its record), 2 freed", s)
	}
	d.Close() // the deletes run behind; Close waits for them
	if n := st.Len(); n != 1 {
		t.Fatalf("the store holds %d objects, want only the one not freed", n)
	}
}

// TestFreePending: an object freed before its task made it is dropped when
// it is sealed; whoever waited for it is woken with the value.
func TestFreePending(t *testing.T) {
	st := store.NewMemory()
	d := newDir(t, st, func(c *Config) { c.InlineLimit = 16 })
	ctx := ctxFor(t)
	small, large := ids.NewTaskID().Return(0), ids.NewTaskID().Return(0)
	got := make(chan abi.Value, 2)
	for _, id := range []ids.ObjectID{small, large} {
		d.Expect(id, id.Task())
		if err := d.OnReady(ctx, id, func(v abi.Value) { got <- v }); err != nil {
			t.Fatal(err)
		}
	}
	d.Free([]ids.ObjectID{small, large})
	if err := d.Seal(ctx, small, jsonValue("1")); err != nil {
		t.Fatal(err)
	}
	if err := d.Seal(ctx, large, rawValue(100, 'x')); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		<-got
	}
	if s := d.Stats(); s.Objects != 0 || s.MemBytes != 0 {
		t.Fatalf("stats %+v after the freed objects were sealed, want none", s)
	}
	wantError(t, getOne(t, d, small), abi.ErrorObjectFreed)
	d.Close()
	if n := st.Len(); n != 0 {
		t.Fatalf("the store holds %d objects, want none", n)
	}
}

// TestTombstonesBounded: the record of freed objects stays bounded, and a
// recently freed one is always remembered.
func TestTombstonesBounded(t *testing.T) {
	var ts tombstones
	first := ids.NewTaskID().Return(0)
	ts.add(first)
	for i := range tombstoneGen + 10 {
		ts.add(ids.TaskID{byte(i), byte(i >> 8), byte(i >> 16), 7}.Return(0))
		if i == tombstoneGen/2 && !ts.has(first) {
			t.Fatal("a recently freed object is forgotten")
		}
	}
	last := ids.NewTaskID().Return(0)
	ts.add(last)
	if !ts.has(last) {
		t.Fatal("the last freed object is not remembered")
	}
	if len(ts.cur)+len(ts.prev) != 2*tombstoneBits/64 {
		t.Fatalf("%d words, want two generations", len(ts.cur)+len(ts.prev))
	}
}

// TestCacheCountsRecords: the memory bound counts each object's record,
// not only its bytes: many tiny values are evicted (once stored) like
// fewer large ones, so the directory's memory stays bounded.
func TestCacheCountsRecords(t *testing.T) {
	st := store.NewMemory()
	d := newDir(t, st, func(c *Config) { c.CacheBytes = 100 * objectOverhead })
	ctx := ctxFor(t)
	for i := range 1000 {
		if err := d.Seal(ctx, ids.TaskID{byte(i), byte(i >> 8), 9}.Return(0), jsonValue("1")); err != nil {
			t.Fatal(err)
		}
	}
	d.Close() // every write-behind done, evicting as they end
	if s := d.Stats(); s.MemBytes > 100*objectOverhead+objectOverhead+1 || s.Objects > 101 {
		t.Fatalf("stats %+v after 1000 one-byte values, want at most the bound (100 records)", s)
	}
	if st.Len() != 1000 {
		t.Fatalf("store holds %d, want all 1000", st.Len())
	}
}

// TestFreeThenPutAgain: an ID freed and then sealed again (a retried task
// puts under its first attempt's IDs) keeps the new value: the queued
// delete of the old one never undoes it.
func TestFreeThenPutAgain(t *testing.T) {
	st := store.NewMemory()
	d := newDir(t, st, func(c *Config) { c.InlineLimit = 16 })
	ctx := ctxFor(t)
	for i := range 50 {
		large, small := ids.TaskID{byte(i), 1}.Put(0), ids.TaskID{byte(i), 2}.Put(0)
		for _, id := range []ids.ObjectID{large, small} {
			if err := d.Seal(ctx, id, rawValue(map[bool]int{true: 100, false: 4}[id == large], 'a')); err != nil {
				t.Fatal(err)
			}
		}
		d.Free([]ids.ObjectID{large, small})
		for _, id := range []ids.ObjectID{large, small} {
			if err := d.Seal(ctx, id, rawValue(map[bool]int{true: 100, false: 4}[id == large], 'b')); err != nil {
				t.Fatal(err)
			}
			if v := getOne(t, d, id); v.Codec != abi.CodecRaw || v.Data[0] != 'b' {
				t.Fatalf("round %d: %s reads %v %q, want the new value", i, id, v.Codec, v.Data)
			}
		}
	}
	d.Close()
	if n := st.Len(); n != 100 {
		t.Fatalf("the store holds %d objects, want the 100 sealed again", n)
	}
}

// TestEvictionQueueBounded: objects freed while the cache is under its
// bound (nothing is evicted) leave the eviction queue too: after many
// small objects sealed and freed it holds about the objects in memory,
// every one of them, and eviction still takes the oldest first.
func TestEvictionQueueBounded(t *testing.T) {
	const live, n = 50, 10_000
	d := newDir(t, store.NewMemory(), nil)
	ctx := ctxFor(t)
	var inMemory []ids.ObjectID
	for i := range n {
		id := ids.TaskID{byte(i), byte(i >> 8), 11}.Return(0)
		if err := d.Seal(ctx, id, jsonValue("1")); err != nil {
			t.Fatal(err)
		}
		inMemory = append(inMemory, id)
		if len(inMemory) > live { // the oldest is released
			d.Free(inMemory[:1])
			inMemory = inMemory[1:]
		}
		d.mu.Lock()
		queued := len(d.fifo) - d.fifoHead
		d.mu.Unlock()
		if queued > 4*live+4 {
			t.Fatalf("after %d objects sealed, %d in memory, the eviction queue holds %d", i+1, len(inMemory), queued)
		}
	}
	d.mu.Lock()
	queue := d.fifo[d.fifoHead:]
	for _, id := range inMemory {
		if !slices.Contains(queue, id) {
			d.mu.Unlock()
			t.Fatalf("%s, in memory, is not in the eviction queue", id)
		}
	}
	d.mu.Unlock()
	d.Close() // the writes behind are done: all of them may be evicted
	d.mu.Lock()
	// Past the bound now: the oldest in memory go first.
	d.cfg.CacheBytes = memCost([]byte("1")) * (live / 2)
	d.evictLocked()
	_, oldest := d.m[inMemory[0]]
	_, newest := d.m[inMemory[live-1]]
	d.mu.Unlock()
	if oldest || !newest {
		t.Fatalf("evicting half: oldest kept %v, newest kept %v", oldest, newest)
	}
}
