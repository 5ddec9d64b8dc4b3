package objdir

import (
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
	base := st.Len() // the Dir's life mark (restart.go)
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
	if s := d.Stats(); s.Objects != 1 || s.MemBytes != 1 || s.Freed != 2 {
		t.Fatalf("stats %+v, want 1 object of 1 byte, 2 freed", s)
	}
	d.Close() // the deletes run behind; Close waits for them
	if n := st.Len() - base; n != 1 {
		t.Fatalf("the store holds %d objects, want only the one not freed", n)
	}
}

// TestFreePending: an object freed before its task made it is dropped when
// it is sealed; whoever waited for it is woken with the value.
func TestFreePending(t *testing.T) {
	st := store.NewMemory()
	d := newDir(t, st, func(c *Config) { c.InlineLimit = 16 })
	base := st.Len() // the Dir's life mark (restart.go)
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
	if n := st.Len() - base; n != 0 {
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
