package owner

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/rayhost/rayhost/host/internal/refcount"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// borrowFixture is a fixture whose borrow role knows one member, host
// "hb" at "b:1", and records the Borrow calls it would send (answered by
// answer, which may be nil).
type borrowFixture struct {
	*fixture
	mu     sync.Mutex
	calls  []string
	answer func(add []ids.ObjectID) (freed []ids.ObjectID)
}

func newBorrowFixture(t *testing.T) *borrowFixture {
	bf := &borrowFixture{fixture: newFixture(t, nil)}
	b := bf.o.brw
	b.enabled = true
	b.member = func(addr string) string {
		if addr == "b:1" {
			return "hb"
		}
		return ""
	}
	b.call = func(owner string, add, release []ids.ObjectID) (freed, unknown []ids.ObjectID, err error) {
		bf.mu.Lock()
		bf.calls = append(bf.calls, fmt.Sprintf("%s +%d -%d", owner, len(add), len(release)))
		answer := bf.answer
		bf.mu.Unlock()
		if answer != nil {
			freed = answer(add)
		}
		return freed, nil, nil
	}
	return bf
}

func (bf *borrowFixture) sent() []string {
	bf.mu.Lock()
	defer bf.mu.Unlock()
	return slices.Clone(bf.calls)
}

// put stores a value held by the test's client and returns its ID.
func (bf *borrowFixture) put(t *testing.T, v string) ids.ObjectID {
	t.Helper()
	id := ids.NewTaskID().Put(0)
	if err := bf.api.Put(hangCtx(t), testCaller, id, abi.Value{Codec: abi.CodecJSON, Data: []byte(v)}); err != nil {
		t.Fatal(err)
	}
	return id
}

func (bf *borrowFixture) dropClient(id ids.ObjectID) {
	bf.o.refs.release(testHolder, []ids.ObjectID{id}, nil)
}

// TestBorrowKeepsObject: an object another host borrows outlives its local
// refs; the borrower's release, or its death, frees it.
func TestBorrowKeepsObject(t *testing.T) {
	bf := newBorrowFixture(t)
	b := bf.o.brw
	for _, end := range []string{"release", "host gone"} {
		t.Run(end, func(t *testing.T) {
			id := bf.put(t, "1")
			if freed, unknown, err := b.serve("b:1", []ids.ObjectID{id}, nil); err != nil || len(freed)+len(unknown) != 0 {
				t.Fatalf("borrow: freed %v unknown %v err %v", freed, unknown, err)
			}
			bf.dropClient(id)
			if !bf.o.refs.counted(id) {
				t.Fatal("a borrowed object was freed when its local refs went")
			}
			if end == "release" {
				_, _, _ = b.serve("b:1", nil, []ids.ObjectID{id})
			} else {
				// Gossip says the member left or failed.
				hostPlacement{bf.o}.MemberChanged("hb", false, false, scheduler.Resources{}, scheduler.Resources{})
			}
			waitUntil(t, "the object to be freed", func() bool { return !bf.o.objs.Known(hangCtx(t), id) })
			// A borrow that comes after the free is answered "freed".
			if freed, _, _ := b.serve("b:1", []ids.ObjectID{id}, nil); !slices.Equal(freed, []ids.ObjectID{id}) {
				t.Fatalf("a late borrow is answered freed %v", freed)
			}
		})
	}
}

// TestAttackBorrows: a peer that releases borrows it never made frees
// nothing; one that registers a million borrows keeps nothing for the
// unknown ones and is refused past its bound; a stranger is refused.
func TestAttackBorrows(t *testing.T) {
	bf := newBorrowFixture(t)
	b := bf.o.brw
	victim := bf.put(t, "7")
	t.Run("release of borrows never made", func(t *testing.T) {
		if _, _, err := b.serve("b:1", nil, []ids.ObjectID{victim, victim}); err != nil {
			t.Fatal(err)
		}
		if v := bf.value(t, victim); string(v.Data) != "7" {
			t.Fatalf("the victim reads %q", v.Data)
		}
	})
	t.Run("a million borrows of unknown objects", func(t *testing.T) {
		before := bf.o.refs.stats()
		batch := make([]ids.ObjectID, maxBorrowBatch)
		for sent := 0; sent < 1_000_000; sent += len(batch) {
			task := ids.NewTaskID()
			for i := range batch {
				batch[i] = task.Put(uint32(i))
			}
			_, unknown, err := b.serve("b:1", batch, nil)
			if err != nil || len(unknown) != len(batch) {
				t.Fatalf("after %d: %d unknown, %v", sent, len(unknown), err)
			}
		}
		if after := bf.o.refs.stats(); after.Objects != before.Objects || bf.o.refs.borrowsOf("hb") != 0 {
			t.Fatalf("the counter grew: %+v → %+v", before, after)
		}
	})
	t.Run("a batch too large", func(t *testing.T) {
		_, _, err := b.serve("b:1", make([]ids.ObjectID, maxBorrowBatch+1), nil)
		if !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("%v, want ErrInvalidArgument", err)
		}
	})
	t.Run("past the bound per host", func(t *testing.T) {
		b.limit = 2
		defer func() { b.limit = maxBorrowsPerHost }()
		objs := []ids.ObjectID{bf.put(t, "1"), bf.put(t, "2"), bf.put(t, "3")}
		if _, _, err := b.serve("b:1", objs, nil); !errors.Is(err, errBorrowLimit) {
			t.Fatalf("%v, want errBorrowLimit", err)
		}
		if n := bf.o.refs.borrowsOf("hb"); n != 0 {
			t.Fatalf("%d borrows kept from a refused call", n)
		}
	})
	t.Run("a host that is no member", func(t *testing.T) {
		if _, _, err := b.serve("z:1", []ids.ObjectID{victim}, nil); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("%v, want ErrInvalidArgument", err)
		}
	})
}

// TestBorrowerRegisters: refs of another host's objects that a holder
// here reads are registered with their owner once, and released when the
// last holder lets go; a registration and a release not yet sent cancel
// out; an owner's "freed" answer makes the object read as freed here.
func TestBorrowerRegisters(t *testing.T) {
	bf := newBorrowFixture(t)
	b := bf.o.brw
	x, y := ids.NewTaskID().Put(0), ids.NewTaskID().Put(0)
	val := func(objs ...ids.ObjectID) abi.Value {
		s := "["
		for i, id := range objs {
			if i > 0 {
				s += ","
			}
			s += fmt.Sprintf(`{"object_id":%q,"owner":"b:1"}`, id)
		}
		return abi.Value{Codec: abi.CodecJSON, Data: []byte(s + "]")}
	}
	h1, h2 := refcount.Holder("task:one/1"), refcount.Holder("task:two/1")
	bf.o.refs.delivered(h1, []abi.Value{val(x, x)})
	bf.o.refs.delivered(h2, []abi.Value{val(x)})
	b.flush(hangCtx(t), "b:1")
	if got := bf.sent(); !slices.Equal(got, []string{"b:1 +1 -0"}) {
		t.Fatalf("calls %v, want one registration", got)
	}
	bf.o.refs.dropHolder(h1)
	b.flush(hangCtx(t), "b:1")
	if got := bf.sent(); len(got) != 1 {
		t.Fatalf("calls %v: a release while another holder holds it", got)
	}
	bf.o.refs.dropHolder(h2)
	b.flush(hangCtx(t), "b:1")
	if got := bf.sent(); !slices.Equal(got, []string{"b:1 +1 -0", "b:1 +0 -1"}) {
		t.Fatalf("calls %v, want the registration, then the release", got)
	}

	// Not sent yet: they cancel out.
	b.registered("b:1", y)
	b.released("b:1", []ids.ObjectID{y})
	b.flush(hangCtx(t), "b:1")
	if got := bf.sent(); len(got) != 2 {
		t.Fatalf("calls %v: a registration and release not sent must cancel out", got)
	}

	// The owner had freed it: waits here end with object_freed.
	bf.mu.Lock()
	bf.answer = func(add []ids.ObjectID) []ids.ObjectID { return add }
	bf.mu.Unlock()
	bf.o.objs.Borrow(hangCtx(t), y, "b:1")
	bf.o.refs.delivered(h1, []abi.Value{val(y)})
	b.flush(hangCtx(t), "b:1")
	if !bf.o.objs.Freed(y) {
		t.Fatal("a borrow its owner answered freed does not read as freed")
	}
}

// borrowsOf is how many of this host's objects the host named borrows.
func (r *refsRole) borrowsOf(host string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.c.Borrowed(host)
}

// TestBorrowQueueHammer: many goroutines register and release borrows
// while senders run and others flush: the owner sees, per object, a
// registration before any release, and as many releases as
// registrations in the end.
func TestBorrowQueueHammer(t *testing.T) {
	bf := newBorrowFixture(t)
	b := bf.o.brw
	var mu sync.Mutex
	seen := map[ids.ObjectID]int{} // registrations minus releases, as sent
	bad := 0
	b.call = func(owner string, add, release []ids.ObjectID) (freed, unknown []ids.ObjectID, err error) {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range add {
			seen[id]++
		}
		for _, id := range release {
			if seen[id]--; seen[id] < 0 {
				bad++
			}
		}
		return nil, nil, nil
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			task := ids.NewTaskID()
			for i := range 500 {
				id := task.Put(uint32(i % 50))
				b.registered("b:1", id)
				if i%3 == 0 {
					b.kick([]string{"b:1"})
				}
				if i%7 == g {
					b.flush(hangCtx(t), "b:1")
				}
				b.released("b:1", []ids.ObjectID{id})
			}
		})
	}
	wg.Wait()
	b.flush(hangCtx(t), "b:1")
	mu.Lock()
	defer mu.Unlock()
	if bad > 0 {
		t.Fatalf("%d releases reached the owner before their registration", bad)
	}
	for id, n := range seen {
		if n != 0 {
			t.Fatalf("%s: %d borrows left at the owner", id, n)
		}
	}
}
