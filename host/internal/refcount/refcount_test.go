package refcount

import (
	"reflect"
	"testing"

	"github.com/rayhost/rayhost/internal/ids"
)

var (
	driver  = Holder("session:d")
	attempt = Holder("attempt:t1")
	actor   = Holder("actor:a")

	t1, t2, t3 = tid(1), tid(2), tid(3)
	r1, r2, r3 = t1.Return(0), t2.Return(0), t3.Return(0)
	p1, p2     = t1.Put(0), t1.Put(1)
	foreign    = tid(9).Return(0) // owned by host "b"
)

func tid(n byte) ids.TaskID { return ids.TaskID{n} }

func free(id ids.ObjectID) Action { return Action{Kind: Free, ID: id} }

// step is one event: it returns the event's actions.
type step func(c *Counter) []Action

func create(h Holder, id ids.ObjectID) step {
	return func(c *Counter) []Action { c.Create(h, id); return nil }
}
func submit(h Holder, task ids.TaskID, args ...ids.ObjectID) step {
	return func(c *Counter) []Action { c.Submit(h, task, []ids.ObjectID{task.Return(0)}, args); return nil }
}
func release(h Holder, id ids.ObjectID, n int32) step {
	return func(c *Counter) []Action { return c.Release(h, id, n) }
}
func add(h Holder, id ids.ObjectID, owner string, n int32) step {
	return func(c *Counter) []Action { c.Add(h, id, owner, n); return nil }
}
func drop(h Holder) step { return func(c *Counter) []Action { return c.DropHolder(h) } }
func ended(task ids.TaskID, keep bool) step {
	return func(c *Counter) []Action { return c.TaskEnded(task, keep) }
}
func sealed(id ids.ObjectID, contains ...ids.ObjectID) step {
	return func(c *Counter) []Action { return c.Sealed(id, contains) }
}
func borrow(id ids.ObjectID, host string) step {
	return func(c *Counter) []Action { c.AddBorrower(id, host); return nil }
}
func unborrow(id ids.ObjectID, host string) step {
	return func(c *Counter) []Action { return c.ReleaseBorrower(id, host) }
}
func gone(host string) step { return func(c *Counter) []Action { return c.HostGone(host) } }
func rebuilding(task ids.TaskID) step {
	return func(c *Counter) []Action { c.Rebuilding(task); return nil }
}

// TestCounter drives the Counter through every way an object is held and
// released: each row replays its steps on a fresh Counter and checks the
// last step's actions and which objects are still counted.
func TestCounter(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		want  []Action       // of the last step
		alive []ids.ObjectID // counted after the last step
		gone  []ids.ObjectID // not counted after it
	}{
		// Local references.
		{"a put is held by its creator", []step{create(driver, p1), sealed(p1)}, nil, []ids.ObjectID{p1}, nil},
		{"releasing the last local ref frees", []step{create(driver, p1), sealed(p1), release(driver, p1, 1)}, []Action{free(p1)}, nil, []ids.ObjectID{p1}},
		{"two refs need two releases", []step{create(driver, p1), add(driver, p1, "", 1), release(driver, p1, 1)}, nil, []ids.ObjectID{p1}, nil},
		{"a release of more than held releases what is held", []step{create(driver, p1), add(driver, p1, "", 1), release(driver, p1, 5)}, []Action{free(p1)}, nil, []ids.ObjectID{p1}},
		{"two holders: the object lives until both release", []step{create(driver, p1), add(attempt, p1, "", 1), release(driver, p1, 1)}, nil, []ids.ObjectID{p1}, nil},
		{"nobody releases another holder's refs", []step{create(driver, p1), release(attempt, p1, 1)}, nil, []ids.ObjectID{p1}, nil},
		{"a release of an unknown object does nothing", []step{release(driver, p1, 1)}, nil, nil, []ids.ObjectID{p1}},
		{"a holder's end releases all it holds", []step{create(attempt, p1), create(attempt, p2), add(attempt, p2, "", 3), drop(attempt)}, []Action{free(p1), free(p2)}, nil, []ids.ObjectID{p1, p2}},
		{"dropping an unknown holder does nothing", []step{create(driver, p1), drop(attempt)}, nil, []ids.ObjectID{p1}, nil},
		{"a freed object cannot be revived by Add", []step{create(driver, p1), release(driver, p1, 1), add(attempt, p1, "", 1)}, nil, nil, []ids.ObjectID{p1}},
		{"an unsealed object with no refs is freed (dropped when it comes)", []step{submit(driver, t1), release(driver, r1, 1)}, []Action{free(r1)}, nil, []ids.ObjectID{r1}},

		// Arguments of submitted tasks (borrowed for the task's life).
		{"an argument lives while its task runs", []step{create(driver, p1), submit(driver, t2, p1), release(driver, p1, 1)}, nil, []ids.ObjectID{p1, r2}, nil},
		{"an argument is released when its task ends", []step{create(driver, p1), submit(driver, t2, p1), release(driver, p1, 1), ended(t2, false)}, []Action{free(p1)}, []ids.ObjectID{r2}, []ids.ObjectID{p1}},
		{"an argument given twice is counted once", []step{create(driver, p1), submit(driver, t2, p1, p1), release(driver, p1, 1), ended(t2, false)}, []Action{free(p1)}, nil, []ids.ObjectID{p1}},
		{"a retry does not count arguments again", []step{create(driver, p1), submit(driver, t2, p1), submit(driver, t2, p1), release(driver, p1, 1), ended(t2, false)}, []Action{free(p1)}, nil, []ids.ObjectID{p1}},
		{"a task's end is counted once", []step{create(driver, p1), add(driver, p1, "", 1), submit(driver, t2, p1), ended(t2, false), ended(t2, false), release(driver, p1, 1)}, nil, []ids.ObjectID{p1}, nil},
		{"a chain is freed from its end", []step{submit(driver, t1), submit(driver, t2, r1), release(driver, r1, 1), ended(t1, false), ended(t2, false)}, []Action{free(r1)}, []ids.ObjectID{r2}, []ids.ObjectID{r1}},

		// Lineage: a finished task whose result lives only elsewhere keeps
		// its arguments until that result is freed.
		{"lineage pins the arguments", []step{create(driver, p1), submit(driver, t2, p1), release(driver, p1, 1), ended(t2, true)}, nil, []ids.ObjectID{p1, r2}, nil},
		{"freeing the result releases lineage and arguments", []step{create(driver, p1), submit(driver, t2, p1), release(driver, p1, 1), ended(t2, true), release(driver, r2, 1)},
			[]Action{free(r2), {Kind: ForgetLineage, Task: t2}, free(p1)}, nil, []ids.ObjectID{p1, r2}},
		{"a rebuild counts arguments as submitted again", []step{create(driver, p1), submit(driver, t2, p1), release(driver, p1, 1), ended(t2, true), rebuilding(t2), ended(t2, false)},
			[]Action{free(p1)}, []ids.ObjectID{r2}, []ids.ObjectID{p1}},
		{"a rebuild that keeps lineage again keeps the arguments", []step{create(driver, p1), submit(driver, t2, p1), release(driver, p1, 1), ended(t2, true), rebuilding(t2), ended(t2, true)},
			nil, []ids.ObjectID{p1, r2}, nil},
		{"lineage with results already freed releases at once", []step{create(driver, p1), submit(driver, t2, p1), release(driver, p1, 1), release(driver, r2, 1), ended(t2, true)}, []Action{free(p1)}, nil, []ids.ObjectID{p1, r2}},

		// Nested refs: an object whose value contains refs keeps them.
		{"a contained ref lives with its container", []step{create(driver, p1), create(driver, p2), sealed(p2, p1), release(driver, p1, 1)}, nil, []ids.ObjectID{p1, p2}, nil},
		{"freeing the container frees what it contains", []step{create(driver, p1), create(driver, p2), sealed(p2, p1), release(driver, p1, 1), release(driver, p2, 1)}, []Action{free(p2), free(p1)}, nil, []ids.ObjectID{p1, p2}},
		{"a contained ref also held locally outlives its container", []step{create(driver, p1), create(driver, p2), sealed(p2, p1), release(driver, p2, 1)}, []Action{free(p2)}, []ids.ObjectID{p1}, []ids.ObjectID{p2}},
		{"nesting is followed to the bottom", []step{submit(driver, t1), submit(driver, t2), submit(driver, t3), sealed(r1), sealed(r2, r1), sealed(r3, r2, r2), release(driver, r1, 1), release(driver, r2, 1), release(driver, r3, 1)},
			[]Action{free(r3), free(r2), free(r1)}, nil, []ids.ObjectID{r1, r2, r3}},
		{"a value that contains itself or unknown refs is freed normally", []step{create(driver, p1), sealed(p1, p1, p2), release(driver, p1, 1)}, []Action{free(p1)}, nil, []ids.ObjectID{p1}},
		{"refs inside an uncounted object are never freed", []step{create(driver, p1), sealed(r3, p1), release(driver, p1, 1)}, nil, []ids.ObjectID{p1}, nil},
		{"a sealed object nobody holds is freed at seal", []step{submit(driver, t1), drop(driver), sealed(r1)}, nil, nil, []ids.ObjectID{r1}},

		// Other hosts that borrow an object this host owns.
		{"a borrower keeps the object", []step{create(driver, p1), borrow(p1, "b"), release(driver, p1, 1)}, nil, []ids.ObjectID{p1}, nil},
		{"the borrower's release frees it", []step{create(driver, p1), borrow(p1, "b"), release(driver, p1, 1), unborrow(p1, "b")}, []Action{free(p1)}, nil, []ids.ObjectID{p1}},
		{"a host that does not borrow cannot release", []step{create(driver, p1), borrow(p1, "b"), release(driver, p1, 1), unborrow(p1, "c")}, nil, []ids.ObjectID{p1}, nil},
		{"a borrower's death releases its borrows", []step{create(driver, p1), create(driver, p2), borrow(p1, "b"), borrow(p2, "b"), borrow(p2, "c"), drop(driver), gone("b")}, []Action{free(p1)}, []ids.ObjectID{p2}, []ids.ObjectID{p1}},

		// This host borrows another host's object.
		{"a borrowed ref is counted here", []step{add(attempt, foreign, "b", 1)}, nil, []ids.ObjectID{foreign}, nil},
		{"releasing the last borrowed ref tells the owner", []step{add(attempt, foreign, "b", 2), release(attempt, foreign, 2)}, []Action{{Kind: ReleaseBorrow, ID: foreign, Owner: "b"}}, nil, []ids.ObjectID{foreign}},
		{"a borrowed ref inside an owned value is released with it", []step{add(attempt, foreign, "b", 1), create(attempt, p1), sealed(p1, foreign), drop(attempt)},
			[]Action{free(p1), {Kind: ReleaseBorrow, ID: foreign, Owner: "b"}}, nil, []ids.ObjectID{foreign, p1}},
		{"the owner's death keeps borrowed refs until released", []step{add(attempt, foreign, "b", 1), gone("b")}, nil, []ids.ObjectID{foreign}, nil},
		{"a borrowed object cannot be borrowed from here", []step{add(attempt, foreign, "b", 1), borrow(foreign, "c"), release(attempt, foreign, 1)}, []Action{{Kind: ReleaseBorrow, ID: foreign, Owner: "b"}}, nil, []ids.ObjectID{foreign}},

		// An actor holds what its state holds until it dies.
		{"an actor holds refs across calls", []step{create(actor, p1), submit(actor, t2, p1), ended(t2, false)}, nil, []ids.ObjectID{p1}, nil},
		{"an actor's death releases them", []step{create(actor, p1), submit(actor, t2, p1), ended(t2, false), drop(actor)}, []Action{free(p1), free(r2)}, nil, []ids.ObjectID{p1, r2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := New()
			var got []Action
			for _, s := range tc.steps {
				got = s(c)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("actions = %v, want %v", got, tc.want)
			}
			for _, id := range tc.alive {
				if !c.Counted(id) {
					t.Errorf("%s was freed, want it alive", id)
				}
			}
			for _, id := range tc.gone {
				if c.Counted(id) {
					t.Errorf("%s is still counted, want it gone", id)
				}
			}
		})
	}
}

// TestCounterBounded: a long run of tasks and puts whose refs are all
// dropped leaves nothing behind — the bookkeeping is bounded by what is
// alive, not by what ever was.
func TestCounterBounded(t *testing.T) {
	c := New()
	var freed int
	for i := range 10000 {
		h := Holder("attempt:" + string(rune('a'+i%7)))
		task := ids.TaskID{byte(i), byte(i >> 8), 1}
		put := task.Put(0)
		c.Create(h, put)
		c.Submit(h, task, []ids.ObjectID{task.Return(0)}, []ids.ObjectID{put})
		c.Sealed(put, nil)
		freed += len(c.Release(h, put, 1))
		freed += len(c.Sealed(task.Return(0), []ids.ObjectID{put}))
		freed += len(c.TaskEnded(task, i%3 == 0))
		freed += len(c.Release(h, task.Return(0), 1))
	}
	if s := c.Stats(); s.Objects != 0 || s.Holders != 0 || s.Tasks != 0 || len(c.borrowed) != 0 {
		t.Fatalf("stats after every ref was dropped: %+v", s)
	}
	if freed < 20000 {
		t.Fatalf("%d free actions, want one per object (20000) plus lineage", freed)
	}
}

func TestSnapshot(t *testing.T) {
	c := New()
	c.Create(driver, p1)
	c.Create(attempt, p2)
	c.Sealed(p2, []ids.ObjectID{p1})
	c.AddBorrower(p1, "b")
	c.Submit(driver, t2, []ids.ObjectID{r2}, []ids.ObjectID{p1})
	snap := c.Snapshot()
	if len(snap) != 3 {
		t.Fatalf("snapshot has %d objects, want 3", len(snap))
	}
	var got Refs
	for _, r := range snap {
		if r.ID == p1 {
			got = r
		}
	}
	want := Refs{ID: p1, Holders: map[Holder]int32{driver: 1}, Submitted: 1, In: []ids.ObjectID{p2}, Borrowers: []string{"b"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("p1: %+v, want %+v", got, want)
	}
}
