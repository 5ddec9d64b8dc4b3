package objdir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// awaitAdded waits for the twin's AddLocation call want.
func awaitAdded(t *testing.T, c *cluster, want string) {
	t.Helper()
	timeout := time.After(hangGuard)
	for {
		select {
		case got := <-c.added:
			if got == want {
				return
			}
		case <-timeout:
			t.Fatalf("no AddLocation %s", want)
		}
	}
}

// TestBorrow: a host that borrows a ref learns its value from the owner
// once the owner seals it: a small value inline, a large one by where it
// is, pulled on Get (and the owner learns of the new copy).
func TestBorrow(t *testing.T) {
	c := newCluster(t)
	owner, borrower := c.host("a:1", nil), c.host("b:1", nil)
	task := ids.NewTaskID()
	small, large := task.Return(0), task.Return(1)
	owner.Expect(small, task)
	owner.Expect(large, task)
	borrower.Borrow(ctxFor(t), small, "a:1")
	borrower.Borrow(ctxFor(t), large, "a:1")
	if _, err := borrower.WaitReady(ctxFor(t), []ids.ObjectID{small, large}, 1, true, 0, nil); !errors.Is(err, ErrTimeout) {
		t.Fatalf("a borrowed object the owner has not sealed: %v", err)
	}
	big := rawValue(50, 'L')
	_ = owner.Seal(ctxFor(t), small, jsonValue(`"s"`))
	_ = owner.Seal(ctxFor(t), large, big)
	if v := getOne(t, borrower, small); string(v.Data) != `"s"` {
		t.Fatalf("borrowed small value %q", v.Data)
	}
	if v := getOne(t, borrower, large); !bytes.Equal(v.Data, big.Data) || v.Codec != abi.CodecRaw {
		t.Fatalf("borrowed large value: %s %d bytes", v.Codec, len(v.Data))
	}
	if c.pullsFrom("a:1") != 1 {
		t.Fatalf("%d pulls from the owner, want 1", c.pullsFrom("a:1"))
	}
	awaitAdded(t, c, "a:1<-b:1")
	// The owner now names both copies.
	loc, err := owner.Locate(ctxFor(t), large, nil, 0)
	if err != nil || !loc.Ready || loc.Inline || !slices.Equal(loc.Holders, []string{"a:1", "b:1"}) {
		t.Fatalf("owner's answer %+v %v", loc, err)
	}
	// A second Get reads the local copy.
	_ = getOne(t, borrower, large)
	if c.pullsFrom("a:1") != 1 {
		t.Fatal("a second Get pulled again")
	}
}

// TestBorrowFailures: a borrowed ref whose owner is gone fails with
// owner_died; one its owner never learns of, bad_request; an owner's
// answer that does not make sense, a host error.
func TestBorrowFailures(t *testing.T) {
	c := newCluster(t)
	owner, borrower := c.host("a:1", nil), c.host("b:1", nil)
	gone := ids.NewTaskID().Return(0)
	borrower.Borrow(ctxFor(t), gone, "nobody:1")
	wantError(t, getOne(t, borrower, gone), abi.ErrorOwnerDied)

	unknown := ids.NewTaskID().Return(0)
	borrower.Borrow(ctxFor(t), unknown, "a:1") // the owner never hears of it
	te := wantError(t, getOne(t, borrower, unknown), abi.ErrorBadRequest)
	t.Logf("unknown to its owner: %s", te.Message)

	freed := ids.NewTaskID().Return(0) // freed by its owner before the borrower asks
	if err := owner.Seal(ctxFor(t), freed, jsonValue("1")); err != nil {
		t.Fatal(err)
	}
	owner.Free([]ids.ObjectID{freed})
	borrower.Borrow(ctxFor(t), freed, "a:1")
	te = wantError(t, getOne(t, borrower, freed), abi.ErrorObjectFreed)
	t.Logf("freed by its owner: %s", te.Message)

	bad := ids.NewTaskID().Return(0)
	c.mu.Lock()
	c.locate = func(_ string, id ids.ObjectID) (Location, bool, error) {
		switch id {
		case bad:
			return Location{Ready: true, Codec: "no such codec", Inline: true, Data: []byte("x")}, true, nil
		}
		return Location{}, false, nil
	}
	c.mu.Unlock()
	borrower.Borrow(ctxFor(t), bad, "a:1")
	wantError(t, getOne(t, borrower, bad), abi.ErrorHost)
	noHolders := ids.NewTaskID().Return(0)
	owner.Expect(noHolders, noHolders.Task())
	c.mu.Lock()
	c.locate = func(_ string, id ids.ObjectID) (Location, bool, error) {
		return Location{Ready: true, Codec: "raw", Size: 100}, id == noHolders, nil
	}
	c.mu.Unlock()
	borrower.Borrow(ctxFor(t), noHolders, "a:1")
	wantError(t, getOne(t, borrower, noHolders), abi.ErrorHost)
}

// TestBorrowOwnerDiesWhileWaiting: the owner fails while a borrower waits:
// the wait ends with owner_died.
func TestBorrowOwnerDiesWhileWaiting(t *testing.T) {
	c := newCluster(t)
	owner, borrower := c.host("a:1", nil), c.host("b:1", nil)
	id := ids.NewTaskID().Return(0)
	owner.Expect(id, id.Task())
	var unreachable = fmt.Errorf("a:1: %w: it failed", ErrUnreachable)
	calls := make(chan struct{}, 16)
	c.mu.Lock()
	c.locate = func(string, ids.ObjectID) (Location, bool, error) {
		calls <- struct{}{}
		if len(calls) > 1 {
			return Location{}, true, unreachable
		}
		return Location{}, true, nil // not ready yet
	}
	c.mu.Unlock()
	borrower.Borrow(ctxFor(t), id, "a:1")
	te := wantError(t, getOne(t, borrower, id), abi.ErrorOwnerDied)
	if !bytes.Contains([]byte(te.Message), []byte("a:1")) {
		t.Fatalf("owner_died message %q does not name the owner", te.Message)
	}
}

// TestCloseEndsBorrows: Close does not wait for an owner that never
// answers, and a borrow after Close does nothing.
func TestCloseEndsBorrows(t *testing.T) {
	c := newCluster(t)
	owner, borrower := c.host("a:1", nil), c.host("b:1", nil)
	id := ids.NewTaskID().Return(0)
	owner.Expect(id, id.Task())
	borrower.Borrow(ctxFor(t), id, "a:1")
	closed := make(chan struct{})
	go func() { borrower.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(hangGuard):
		t.Fatal("Close waited for an owner that never answers")
	}
	later := ids.NewTaskID().Return(0)
	borrower.Borrow(ctxFor(t), later, "a:1")
	if _, err := borrower.WaitReady(ctxFor(t), []ids.ObjectID{later}, 1, true, 0, nil); !errors.Is(err, ErrTimeout) {
		t.Fatalf("a borrow after Close: %v", err)
	}
}

// TestOutsideACluster: without Peers, a borrow does nothing and a value
// held elsewhere is lost.
func TestOutsideACluster(t *testing.T) {
	d := newDir(t, nil, nil)
	id := ids.NewTaskID().Return(0)
	d.Borrow(ctxFor(t), id, "a:1")
	if d.Known(ctxFor(t), id) {
		t.Fatal("a borrow outside a cluster registered the object")
	}
	_ = d.Seal(ctxFor(t), id, Held{Codec: abi.CodecRaw, Size: 50, Holders: []string{"a:1"}}.Value())
	te := wantError(t, getOne(t, d, id), abi.ErrorObjectLost)
	t.Logf("held outside a cluster: %s", te.Message)
	if err := d.Fetch(ctxFor(t), id, []string{"a:1"}, ""); !errors.Is(err, ErrLost) {
		t.Fatalf("Fetch outside a cluster: %v", err)
	}
}

// TestPullFromHolders: a fetch takes the first holder that gives the
// bytes. A holder that fails mid-transfer leaves nothing behind and is
// kept (it may still have it), and so is one that is down (it may come
// back with it); one that has no copy is forgotten.
func TestPullFromHolders(t *testing.T) {
	c := newCluster(t)
	x, y, z, reader := c.host("x:1", nil), c.host("y:1", nil), c.host("z:1", nil), c.host("r:1", nil)
	_ = z
	id := ids.NewTaskID().Return(0)
	big := rawValue(40, 'B')
	_ = x.Seal(ctxFor(t), id, big)
	_ = y.Seal(ctxFor(t), id, big)
	c.mu.Lock()
	c.breakAfter["x:1"] = 20 // x fails half-way
	c.mu.Unlock()
	c.setDown("w:1")
	// w is down, x breaks, z has no copy, y gives it.
	_ = reader.Seal(ctxFor(t), id, Held{Codec: abi.CodecRaw, Size: 40, Holders: []string{"w:1", "x:1", "z:1", "y:1"}}.Value())
	if v := getOne(t, reader, id); !bytes.Equal(v.Data, big.Data) {
		t.Fatalf("pulled %d bytes", len(v.Data))
	}
	if c.pullsFrom("x:1") != 1 || c.pullsFrom("z:1") != 1 || c.pullsFrom("y:1") != 1 {
		t.Fatalf("pulls: %v", c.pulls)
	}

	// Only a breaking holder: the fetch fails, nothing partial is stored,
	// the holder is kept, and a later fetch (once it works) succeeds.
	id2 := ids.NewTaskID().Return(0)
	_ = x.Seal(ctxFor(t), id2, big)
	_ = reader.Seal(ctxFor(t), id2, Held{Codec: abi.CodecRaw, Size: 40, Holders: []string{"x:1", "z:1", "w:1"}}.Value())
	err := reader.Fetch(ctxFor(t), id2, []string{"x:1", "z:1", "w:1"}, "")
	if !errors.Is(err, ErrLost) {
		t.Fatalf("a fetch from a breaking holder: %v", err)
	}
	if reader.Here(ctxFor(t), id2) {
		t.Fatal("a broken pull left the object here")
	}
	h, _ := reader.Holding(ctxFor(t), id2)
	if !slices.Equal(h.Holders, []string{"x:1", "w:1"}) {
		t.Fatalf("holders after a failed fetch: %v, want x and w kept and z dropped", h.Holders)
	}
	c.mu.Lock()
	delete(c.breakAfter, "x:1")
	c.mu.Unlock()
	if v := getOne(t, reader, id2); !bytes.Equal(v.Data, big.Data) {
		t.Fatalf("a fetch once the holder works: %d bytes", len(v.Data))
	}
}

// TestFetchAsksOwner: when no holder gives the bytes, the owner is asked
// again (told which holders have no copy) and names a copy that exists.
// It forgets the holders with no copy, not those that are down.
func TestFetchAsksOwner(t *testing.T) {
	c := newCluster(t)
	owner, holder, reader := c.host("a:1", nil), c.host("h:1", nil), c.host("r:1", nil)
	c.host("empty:1", nil)
	id := ids.NewTaskID().Return(0)
	big := rawValue(30, 'O')
	_ = holder.Seal(ctxFor(t), id, big)
	_ = owner.Seal(ctxFor(t), id, Held{Codec: abi.CodecRaw, Size: 30, Holders: []string{"gone:1", "empty:1", "h:1"}}.Value())
	// The reader knows only a holder that is gone and one with no copy.
	c.setDown("gone:1")
	if err := reader.Fetch(ctxFor(t), id, []string{"gone:1", "empty:1"}, "a:1"); err != nil {
		t.Fatal(err)
	}
	if v := getOne(t, reader, id); !bytes.Equal(v.Data, big.Data) {
		t.Fatalf("%d bytes", len(v.Data))
	}
	h, _ := owner.Holding(ctxFor(t), id)
	if !slices.Equal(h.Holders, []string{"gone:1", "h:1"}) {
		t.Fatalf("the owner names %v, want the one that is down and the copies", h.Holders)
	}
}

// TestOwnerRebuilds: an owner asked about an object whose every copy is
// gone rebuilds it (Config.Rebuild) and answers with the new value; one it
// cannot rebuild is answered as lost (or owner_died), and a reader's Get
// gets that failure.
func TestOwnerRebuilds(t *testing.T) {
	c := newCluster(t)
	id := ids.NewTaskID().Return(0)
	lost := ids.NewTaskID().Put(1)
	died := ids.NewTaskID().Return(0)
	var owner *Dir
	rebuilds := make(chan ids.ObjectID, 4)
	owner = c.host("a:1", func(cfg *Config) {
		cfg.Rebuild = func(x ids.ObjectID) error {
			rebuilds <- x
			switch x {
			case id:
				owner.Reset(x)
				go func() { _ = owner.Seal(context.Background(), x, rawValue(20, 'R')) }()
				return nil
			case died:
				return fmt.Errorf("%w: its owner is gone", ErrOwnerDied)
			}
			return fmt.Errorf("%w: %s was put", ErrLost, x)
		}
	})
	reader := c.host("r:1", nil)
	c.setDown("gone:1")
	for _, x := range []ids.ObjectID{id, lost, died} {
		_ = owner.Seal(ctxFor(t), x, Held{Codec: abi.CodecRaw, Size: 20, Holders: []string{"gone:1"}}.Value())
		_ = reader.Seal(ctxFor(t), x, Held{Codec: abi.CodecRaw, Size: 20, Holders: []string{"gone:1"}}.Value())
		reader.mu.Lock()
		reader.m[x].owner = "a:1" // as if borrowed
		reader.mu.Unlock()
	}
	if v := getOne(t, reader, id); !bytes.Equal(v.Data, rawValue(20, 'R').Data) {
		t.Fatalf("the rebuilt value: %q", v.Data)
	}
	te := wantError(t, getOne(t, reader, lost), abi.ErrorObjectLost)
	if te.Host != "host-a:1" {
		t.Fatalf("the lost answer names host %q", te.Host)
	}
	wantError(t, getOne(t, reader, died), abi.ErrorOwnerDied)
	if len(rebuilds) != 3 {
		t.Fatalf("%d rebuilds, want 3", len(rebuilds))
	}
}

// TestRebuildHere: a value this host owns whose holders are all gone is
// rebuilt here; without Rebuild it is lost.
func TestRebuildHere(t *testing.T) {
	c := newCluster(t)
	var d *Dir
	d = c.host("a:1", func(cfg *Config) {
		cfg.Rebuild = func(x ids.ObjectID) error {
			d.Reset(x)
			go func() { _ = d.Seal(context.Background(), x, jsonValue(`"again"`)) }()
			return nil
		}
	})
	c.setDown("gone:1")
	id := ids.NewTaskID().Return(0)
	_ = d.Seal(ctxFor(t), id, Held{Codec: abi.CodecJSON, Size: 20, Holders: []string{"gone:1"}}.Value())
	if v := getOne(t, d, id); string(v.Data) != `"again"` {
		t.Fatalf("rebuilt here: %q", v.Data)
	}
	plain := c.host("p:1", nil)
	id2 := ids.NewTaskID().Return(0)
	_ = plain.Seal(ctxFor(t), id2, Held{Codec: abi.CodecJSON, Size: 20, Holders: []string{"gone:1"}}.Value())
	wantError(t, getOne(t, plain, id2), abi.ErrorObjectLost)
}

// TestLocateWaits: an owner's Locate answers "not ready" at its timeout,
// and with the value once it is sealed.
func TestLocateWaits(t *testing.T) {
	d := newDir(t, nil, nil)
	id := ids.NewTaskID().Return(0)
	d.Expect(id, id.Task())
	if loc, err := d.Locate(ctxFor(t), id, nil, 0); err != nil || loc.Ready {
		t.Fatalf("Locate of a pending object: %+v %v", loc, err)
	}
	done := make(chan Location, 1)
	go func() {
		loc, err := d.Locate(ctxFor(t), id, nil, -1)
		if err != nil {
			t.Error(err)
		}
		done <- loc
	}()
	awaitWaiters(t, d, id, 1)
	_ = d.Seal(ctxFor(t), id, jsonValue("5"))
	loc := <-done
	if !loc.Ready || !loc.Inline || string(loc.Data) != "5" || loc.Codec != "json" {
		t.Fatalf("Locate: %+v", loc)
	}
}

// TestPullRefusesLyingPeer: a holder whose header does not match the bytes
// it sends (more, fewer, or a codec that does not exist) stores nothing
// here; the next holder is tried.
func TestPullRefusesLyingPeer(t *testing.T) {
	for name, lie := range map[string]Header{
		"more bytes than said":  {Codec: abi.CodecRaw, Size: 10},
		"fewer bytes than said": {Codec: abi.CodecRaw, Size: 400},
		"no such codec":         {Codec: 77, Size: 40},
		"a held codec":          {Codec: CodecHeld, Size: 40},
	} {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t)
			liar, honest, reader := c.host("l:1", nil), c.host("h:1", nil), c.host("r:1", nil)
			id := ids.NewTaskID().Return(0)
			big := rawValue(40, 'T')
			_ = liar.Seal(ctxFor(t), id, big)
			c.mu.Lock()
			c.lie["l:1"] = lie
			c.mu.Unlock()
			if err := reader.Fetch(ctxFor(t), id, []string{"l:1"}, ""); !errors.Is(err, ErrLost) {
				t.Fatalf("a fetch from a lying holder only: %v", err)
			}
			if reader.Here(ctxFor(t), id) {
				t.Fatal("a lying holder's bytes were stored")
			}
			_ = honest.Seal(ctxFor(t), id, big)
			_ = reader.Seal(ctxFor(t), id, Held{Codec: abi.CodecRaw, Size: 40, Holders: []string{"l:1", "h:1"}}.Value())
			if v := getOne(t, reader, id); !bytes.Equal(v.Data, big.Data) || v.Codec != abi.CodecRaw {
				t.Fatalf("after a liar, the honest holder's copy: %s %d bytes", v.Codec, len(v.Data))
			}
		})
	}
}
