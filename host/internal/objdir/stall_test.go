package objdir

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/clock"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

// TestPullStalledHolder: a holder that is alive, sends the header and part
// of an object, then nothing (and never hangs up) does not hold a Get
// forever: after PullIdle without a byte the pull is given up with
// ErrStalled, the next holder gives the bytes, and the stalled holder is
// kept (it may just be slow). With no other holder, the fetch ends. (Found by an attack review of the pull path.)
func TestPullStalledHolder(t *testing.T) {
	const idle = time.Minute
	c := newCluster(t)
	clk := clock.NewFake(time.Unix(1_000_000, 0))
	x, y := c.host("x:1", nil), c.host("y:1", nil)
	reader := c.host("r:1", func(cfg *Config) { cfg.Clock, cfg.PullIdle = clk, idle })
	big := rawValue(40, 'S')
	c.mu.Lock()
	c.stallAfter["x:1"] = 20
	c.mu.Unlock()
	// expireStall moves the fake clock until the stalled pull is given up:
	// the first look sees the bytes before the stall, the second none.
	expireStall := func() {
		select {
		case <-c.stalled:
		case <-time.After(hangGuard):
			t.Fatal("the pull never reached the stall")
		}
		clk.Advance(idle)
		clk.Advance(idle)
	}

	id := ids.NewTaskID().Return(0)
	_ = x.Seal(ctxFor(t), id, big)
	_ = y.Seal(ctxFor(t), id, big)
	_ = reader.Seal(ctxFor(t), id, Held{Codec: abi.CodecRaw, Size: 40, Holders: []string{"x:1", "y:1"}}.Value())
	got := make(chan error, 1)
	go func() { got <- reader.Fetch(ctxFor(t), id, []string{"x:1", "y:1"}, "") }()
	expireStall()
	if err := <-got; err != nil {
		t.Fatalf("a fetch past a stalled holder: %v", err)
	}
	if v := getOne(t, reader, id); !bytes.Equal(v.Data, big.Data) {
		t.Fatalf("pulled %d bytes", len(v.Data))
	}
	if c.pullsFrom("x:1") != 1 || c.pullsFrom("y:1") != 1 {
		t.Fatalf("pulls: %v", c.pulls)
	}

	// The stalled holder alone: the fetch ends, the object lost (this
	// host owns it and has no way to rebuild it here).
	id2 := ids.NewTaskID().Return(0)
	_ = x.Seal(ctxFor(t), id2, big)
	go func() { got <- reader.Fetch(ctxFor(t), id2, []string{"x:1"}, "") }()
	expireStall()
	err := <-got
	if !errors.Is(err, ErrLost) {
		t.Fatalf("a fetch from a stalled holder only: %v, want ErrLost", err)
	}
	t.Logf("stalled: %v", err)
}

// TestFreedWhilePulled: the owner frees an object while a borrower is
// pulling a copy of it. The Free's delete runs before the copy is
// committed; the copy must not stay in the borrower's store for good
// (found by an attack review: nothing would ever delete it).
func TestFreedWhilePulled(t *testing.T) {
	c := newCluster(t)
	owner, borrower := c.host("a:1", nil), c.host("b:1", nil)
	task := ids.NewTaskID()
	id := task.Return(0)
	big := rawValue(40, 'F')
	owner.Expect(id, task)
	_ = owner.Seal(ctxFor(t), id, big)
	c.mu.Lock()
	c.holdAfter["a:1"], c.hold = 20, make(chan struct{})
	c.mu.Unlock()
	borrower.Borrow(ctxFor(t), id, "a:1")
	got := make(chan error, 1)
	go func() {
		_, err := borrower.Get(ctxFor(t), []ids.ObjectID{id}, -1, nil)
		got <- err
	}()
	select {
	case <-c.stalled:
	case <-time.After(hangGuard):
		t.Fatal("the pull never started")
	}
	if n := borrower.OwnerFreed(ctxFor(t), "a:1", []ids.ObjectID{id}, nil); n != 1 {
		t.Fatalf("OwnerFreed dropped %d copies, want 1", n)
	}
	if err := borrower.catchUp(ctxFor(t)); err != nil { // the Free's delete ran
		t.Fatal(err)
	}
	close(c.hold)
	<-got // the value or freed: either is a fine answer to a Get racing a Free
	if err := borrower.catchUp(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := borrower.stat(ctxFor(t), id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the copy pulled while its owner freed it is still in the store: %v", err)
	}
}
