package objdir

import (
	"bytes"
	"errors"
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

// TestRestartedOwner: an owner restarted on its store answers for its
// objects as before: a value it had stored, a value held elsewhere
// (object_lost while its holder is down, the value once it is back), and
// owner_died — here and to a borrower, for good — for an object it had
// not made when it stopped. A host that never ran before says not found.
func TestRestartedOwner(t *testing.T) {
	c := newCluster(t)
	owner, holder, borrower := c.host("a:1", nil), c.host("h:1", nil), c.host("b:1", nil)
	task := ids.NewTaskID()
	small, held, unfinished := task.Return(0), task.Return(1), task.Return(2)
	for _, id := range []ids.ObjectID{small, held, unfinished} {
		owner.Expect(id, task)
	}
	big := rawValue(40, 'K')
	_ = holder.Seal(ctxFor(t), held, big)
	_ = owner.Seal(ctxFor(t), small, jsonValue(`"s"`))
	_ = owner.Seal(ctxFor(t), held, Held{Codec: abi.CodecRaw, Size: 40, Holders: []string{"h:1"}}.Value())
	if _, err := owner.Locate(ctxFor(t), ids.NewTaskID().Return(0), nil, 0); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrOwnerDied) {
		t.Fatalf("a host that never ran before, about an object it does not know: %v", err)
	}

	owner = c.restart("a:1", owner)
	c.setDown("h:1")
	if v := getOne(t, owner, small); string(v.Data) != `"s"` {
		t.Fatalf("a stored value after the restart: %s %q", v.Codec, v.Data)
	}
	wantError(t, getOne(t, owner, held), abi.ErrorObjectLost)
	wantError(t, getOne(t, owner, unfinished), abi.ErrorOwnerDied)
	if _, err := owner.Locate(ctxFor(t), unfinished, nil, 0); !errors.Is(err, ErrNotFound) || !errors.Is(err, ErrOwnerDied) {
		t.Fatalf("Locate of an object lost with the restart: %v, want not found and owner died", err)
	}
	borrower.Borrow(ctxFor(t), unfinished, "a:1")
	wantError(t, getOne(t, borrower, unfinished), abi.ErrorOwnerDied)

	c.setUp("h:1")
	owner = c.restart("a:1", owner)
	if v := getOne(t, owner, held); !bytes.Equal(v.Data, big.Data) {
		t.Fatalf("a held value once its holder is back: %s %q", v.Codec, v.Data)
	}
	wantError(t, getOne(t, owner, unfinished), abi.ErrorOwnerDied)
	borrower = c.restart("b:1", borrower)
	borrower.Borrow(ctxFor(t), unfinished, "a:1")
	wantError(t, getOne(t, borrower, unfinished), abi.ErrorOwnerDied)
}

// TestFreeDropsHeldRecord: freeing a held value of this host's own
// deletes the record of where it is, so a restart does not bring it back.
func TestFreeDropsHeldRecord(t *testing.T) {
	st := store.NewMemory()
	d := newDir(t, st, nil)
	id := ids.NewTaskID().Return(0)
	_ = d.Seal(ctxFor(t), id, Held{Codec: abi.CodecRaw, Size: 40, Holders: []string{"h:1"}}.Value())
	if _, err := st.Stat(ctxFor(t), heldKey(id)); err != nil {
		t.Fatalf("no record of where the value is: %v", err)
	}
	d.Free([]ids.ObjectID{id})
	d.Close() // the deletes run behind
	if _, err := st.Stat(ctxFor(t), heldKey(id)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the record outlived Free: %v", err)
	}
}
