package objdir

import (
	"bytes"
	"errors"
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

func (c *cluster) setUp(addr string) {
	c.mu.Lock()
	delete(c.down, addr)
	c.mu.Unlock()
}

// restart closes the Dir at addr and starts another over the same store,
// as a host restarted on its data dir.
func (c *cluster) restart(addr string, d *Dir) *Dir {
	c.t.Helper()
	d.Close()
	return c.host(addr, func(cfg *Config) { cfg.Store, cfg.Restarted = d.st, true })
}

// TestOwnerBackAskedAgain: a borrower whose owner is down answers
// owner_died, and keeps that answer while the owner is down (and across
// its own restart, since it is not stored); once the owner is back, the
// next Borrow asks it again and gets the value.
func TestOwnerBackAskedAgain(t *testing.T) {
	c := newCluster(t)
	owner, borrower := c.host("a:1", nil), c.host("b:1", nil)
	id := ids.NewTaskID().Put(0)
	_ = owner.Seal(ctxFor(t), id, jsonValue(`"v"`))
	c.setDown("a:1")
	for range 2 {
		borrower.Borrow(ctxFor(t), id, "a:1")
		wantError(t, getOne(t, borrower, id), abi.ErrorOwnerDied)
	}
	borrower = c.restart("b:1", borrower)
	if _, err := borrower.st.Stat(ctxFor(t), id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the owner_died answer was stored: %v", err)
	}
	borrower.Borrow(ctxFor(t), id, "a:1")
	wantError(t, getOne(t, borrower, id), abi.ErrorOwnerDied)

	c.setUp("a:1")
	borrower.Borrow(ctxFor(t), id, "a:1")
	if v := getOne(t, borrower, id); string(v.Data) != `"v"` {
		t.Fatalf("once the owner is back: %s %q", v.Codec, v.Data)
	}
}

// TestCopyBackAnswered: while the only host holding a value is down, its
// owner and every reader answer object_lost; once it is back, the owner,
// a reader that knew where the value was, and a borrower that was told it
// was lost all get the value. Nobody forgets the holder that was down.
func TestCopyBackAnswered(t *testing.T) {
	c := newCluster(t)
	owner, holder := c.host("a:1", nil), c.host("h:1", nil)
	reader, borrower := c.host("r:1", nil), c.host("b:1", nil)
	id := ids.NewTaskID().Put(0)
	big := rawValue(40, 'H')
	_ = holder.Seal(ctxFor(t), id, big)
	_ = owner.Seal(ctxFor(t), id, Held{Codec: abi.CodecRaw, Size: 40, Holders: []string{"h:1"}}.Value())
	reader.Borrow(ctxFor(t), id, "a:1")
	if _, err := reader.WaitReady(ctxFor(t), []ids.ObjectID{id}, 1, true, -1, nil); err != nil || !reader.IsHeld(id) {
		t.Fatalf("the reader did not learn where the value is: %v", err)
	}

	c.setDown("h:1")
	wantError(t, getOne(t, owner, id), abi.ErrorObjectLost)
	te := wantError(t, getOne(t, reader, id), abi.ErrorObjectLost)
	if te.Host != "host-a:1" {
		t.Fatalf("the reader's object_lost does not name its owner: %+v", te)
	}
	borrower.Borrow(ctxFor(t), id, "a:1")
	wantError(t, getOne(t, borrower, id), abi.ErrorObjectLost)

	c.setUp("h:1")
	for name, d := range map[string]*Dir{"owner": owner, "reader": reader, "borrower": borrower} {
		d.Borrow(ctxFor(t), id, "a:1") // as a Get through the API does
		if v := getOne(t, d, id); !bytes.Equal(v.Data, big.Data) {
			t.Fatalf("the %s once the holder is back: %s %q", name, v.Codec, v.Data)
		}
	}
}

// TestTaskFailureStays: a task's failure is its object's value: a
// borrower keeps it, and does not ask again.
func TestTaskFailureStays(t *testing.T) {
	c := newCluster(t)
	// Failures are small: inline in the owner's answer.
	owner := c.host("a:1", func(cfg *Config) { cfg.InlineLimit = 1 << 10 })
	borrower := c.host("b:1", nil)
	failed := ids.NewTaskID().Return(0)
	_ = owner.Seal(ctxFor(t), failed, (&abi.TaskError{Kind: abi.ErrorApplication, Message: "boom"}).Encode())
	for range 2 {
		borrower.Borrow(ctxFor(t), failed, "a:1")
		wantError(t, getOne(t, borrower, failed), abi.ErrorApplication)
	}
	borrower.mu.Lock()
	again := borrower.m[failed].provisional
	borrower.mu.Unlock()
	if again {
		t.Fatal("a task's failure was sealed provisionally")
	}
}
