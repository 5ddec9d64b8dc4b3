package objdir

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

// eventually polls cond until it holds (the deletes and the FreeCopies run
// behind), failing at the hang guard.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited in vain for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func stored(st *store.Memory, id ids.ObjectID) bool {
	_, err := st.Stat(context.Background(), id)
	return err == nil
}

// withStore makes a twin host keep its bytes in st.
func withStore(st store.Store) func(*Config) { return func(c *Config) { c.Store = st } }

// TestFreeCopies: when an owner frees objects, every host its directory
// knows may hold a copy deletes it — a value sent inline and written
// behind there, a pulled copy, a held value made there for the owner —
// and a read there says the object was freed.
func TestFreeCopies(t *testing.T) {
	c := newCluster(t)
	sb, sh := store.NewMemory(), store.NewMemory()
	owner, borrower, holder := c.host("a:1", nil), c.host("b:1", withStore(sb)), c.host("h:1", withStore(sh))
	ctx := ctxFor(t)
	task := ids.NewTaskID()
	small, large, held := task.Return(0), task.Return(1), task.Return(2)
	_ = owner.Seal(ctx, small, jsonValue(`"s"`))
	_ = owner.Seal(ctx, large, rawValue(50, 'L'))
	if err := holder.SealFor(ctx, held, "a:1", rawValue(40, 'H')); err != nil {
		t.Fatal(err)
	}
	_ = owner.Seal(ctx, held, Held{Codec: abi.CodecRaw, Size: 40, Holders: []string{"h:1"}}.Value())
	for _, id := range []ids.ObjectID{small, large} {
		borrower.Borrow(ctx, id, "a:1")
		_ = getOne(t, borrower, id)
	}
	awaitAdded(t, c, "a:1<-b:1")
	// Both write behind their seals: wait for the writes.
	eventually(t, "the borrower to store its copies", func() bool { return stored(sb, small) && stored(sb, large) })
	eventually(t, "the holder to store the held value", func() bool { return stored(sh, held) })
	if got := owner.Copies(held); len(got) != 1 || got[0] != "h:1" {
		t.Fatalf("the owner knows copies of the held value on %v, want h:1", got)
	}

	owner.Free([]ids.ObjectID{small, large, held})
	eventually(t, "the copies to be deleted", func() bool { return !stored(sb, small) && !stored(sb, large) && !stored(sh, held) })
	for _, id := range []ids.ObjectID{small, large} {
		if borrower.Known(ctx, id) {
			t.Fatalf("%s is still known on the borrower", id)
		}
		if !borrower.Freed(id) {
			t.Fatalf("%s does not read as freed on the borrower", id)
		}
	}
	if s := borrower.Stats(); s.Dropped != 2 {
		t.Fatalf("the borrower dropped %d copies, want 2", s.Dropped)
	}
}

// TestAttackForgedFreeCopies: a host cannot make another delete copies it
// does not own — another owner's, or the receiving host's own objects —
// and nothing is deleted that the receiving host still counts.
func TestAttackForgedFreeCopies(t *testing.T) {
	c := newCluster(t)
	sb := store.NewMemory()
	owner, borrower := c.host("a:1", nil), c.host("b:1", withStore(sb))
	c.host("x:1", nil) // the forger
	ctx := ctxFor(t)
	theirs, mine := ids.NewTaskID().Return(0), ids.NewTaskID().Return(0)
	_ = owner.Seal(ctx, theirs, rawValue(50, 'T'))
	_ = borrower.Seal(ctx, mine, rawValue(50, 'M'))
	borrower.Borrow(ctx, theirs, "a:1")
	_ = getOne(t, borrower, theirs)
	awaitAdded(t, c, "a:1<-b:1")
	if err := borrower.catchUp(ctx); err != nil { // both written behind
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, from string
		id         ids.ObjectID
	}{
		{"another owner's copy", "x:1", theirs},
		{"the host's own object, named by another", "x:1", mine},
		{"the host's own object, named by its owner's name", "b:1", mine},
		{"the host's own object, named by the other owner", "a:1", mine},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n := borrower.OwnerFreed(ctx, tc.from, []ids.ObjectID{tc.id}, nil); n != 0 {
				t.Fatalf("%d copies deleted", n)
			}
			if !stored(sb, tc.id) || !borrower.Known(ctx, tc.id) {
				t.Fatal("the object is gone")
			}
		})
	}

	// The real owner's free, while something here still counts it: kept.
	if n := borrower.OwnerFreed(ctx, "a:1", []ids.ObjectID{theirs}, func(ids.ObjectID) bool { return true }); n != 0 {
		t.Fatalf("%d copies deleted while counted here", n)
	}
	if !stored(sb, theirs) {
		t.Fatal("a copy still counted here was deleted")
	}
	// Once nothing counts it, the owner's free deletes it.
	if n := borrower.OwnerFreed(ctx, "a:1", []ids.ObjectID{theirs}, nil); n != 1 {
		t.Fatalf("the owner's free deleted %d copies, want 1", n)
	}
	eventually(t, "the copy to be deleted", func() bool { return !stored(sb, theirs) })
}

// TestDropCopy: a host that stops borrowing an object deletes its copy;
// the owner keeps the object, and a later borrow reads it again.
func TestDropCopy(t *testing.T) {
	c := newCluster(t)
	sb := store.NewMemory()
	owner, borrower := c.host("a:1", nil), c.host("b:1", withStore(sb))
	ctx := ctxFor(t)
	id, own := ids.NewTaskID().Return(0), ids.NewTaskID().Return(0)
	big := rawValue(50, 'D')
	_ = owner.Seal(ctx, id, big)
	_ = borrower.Seal(ctx, own, big)
	borrower.Borrow(ctx, id, "a:1")
	_ = getOne(t, borrower, id)
	kept := ids.NewTaskID().Return(0) // a value b keeps for a: maybe its only bytes
	if err := borrower.SealFor(ctx, kept, "a:1", big); err != nil {
		t.Fatal(err)
	}
	borrower.DropCopy(ctx, []ids.ObjectID{id, own, kept})
	eventually(t, "the copy to be deleted", func() bool { return !stored(sb, id) })
	if !stored(sb, own) {
		t.Fatal("DropCopy deleted an object of the host's own")
	}
	if !stored(sb, kept) {
		t.Fatal("DropCopy deleted a value the host keeps for its owner")
	}
	if borrower.Freed(id) {
		t.Fatal("a dropped copy reads as freed: its owner still has it")
	}
	borrower.Borrow(ctx, id, "a:1")
	if v := getOne(t, borrower, id); !bytes.Equal(v.Data, big.Data) {
		t.Fatalf("a borrow after the drop reads %d bytes", len(v.Data))
	}
	if !owner.Known(ctx, id) {
		t.Fatal("the owner lost the object")
	}
}

// TestOwnerFreedHere: a borrow the owner answers "freed" ends the waits
// for it with object_freed.
func TestOwnerFreedHere(t *testing.T) {
	c := newCluster(t)
	owner, borrower := c.host("a:1", nil), c.host("b:1", nil)
	ctx := ctxFor(t)
	id := ids.NewTaskID().Return(0)
	owner.Expect(id, id.Task()) // never sealed: the borrow waits
	borrower.Borrow(ctx, id, "a:1")
	got := make(chan abi.Value, 1)
	if err := borrower.OnReady(ctx, id, func(v abi.Value) { got <- v }); err != nil {
		t.Fatal(err)
	}
	borrower.OwnerFreedHere([]ids.ObjectID{id})
	select {
	case v := <-got:
		wantError(t, v, abi.ErrorObjectFreed)
	case <-ctx.Done():
		t.Fatal("the wait did not end")
	}
	if !borrower.Freed(id) {
		t.Fatal("the object does not read as freed")
	}
}
