package ids

import "testing"

func TestChildren(t *testing.T) {
	p, other := NewTaskID(), NewTaskID()
	c := NewChildren(p, 0)
	// In order, out of order within the window, then far ahead in steps.
	for _, n := range []uint64{0, 1, 3, 2, 10, 4, 200, 400, 600} {
		if got, ok := c.Claim(p.Child(n)); !ok || got != n {
			t.Fatalf("Claim(child %d) = %d, %v", n, got, ok)
		}
	}
	for _, tc := range []struct {
		name string
		id   TaskID
	}{
		{"used twice", p.Child(1)},
		{"another task's child", other.Child(5)},
		{"the parent itself", p},
		{"a random ID", NewTaskID()},
		{"beyond the gap", p.Child(600 + ChildMaxGap + 1)},
		{"too far behind", p.Child(5)},
		{"a grandchild", p.Child(0).Child(0)},
	} {
		if _, ok := c.Claim(tc.id); ok {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	// A gap larger than the window (submits the worker refused) is fine.
	if _, ok := c.Claim(p.Child(600 + ChildMaxGap - 1)); !ok {
		t.Error("a child past a gap of ChildMaxGap was refused")
	}
	if _, ok := c.Claim(p.Child(601)); ok {
		t.Error("a child far below the highest was accepted")
	}
	// A new attempt derives the same IDs again.
	if _, ok := NewChildren(p, 0).Claim(p.Child(0)); !ok {
		t.Error("a new attempt cannot submit its first child")
	}
}

func TestChildrenManyInOrder(t *testing.T) {
	p := NewTaskID()
	c := NewChildren(p, 0)
	for n := range uint64(10_000) {
		if _, ok := c.Claim(p.Child(n)); !ok {
			t.Fatalf("child %d refused", n)
		}
	}
	if len(c.pending) > 4*ChildWindow+ChildWindow {
		t.Fatalf("%d IDs pending", len(c.pending))
	}
}

// A retried attempt's children have IDs of their own, so it never reads the
// results of the previous attempt's children; the first attempt keeps
// Child(n), and later attempts also take the IDs guests built before
// ChildOf derive.
func TestChildrenPerAttempt(t *testing.T) {
	p := NewTaskID()
	if p.ChildOf(0, 3) != p.Child(3) {
		t.Fatal("attempt 0's children are not Child(n)")
	}
	seen := map[TaskID]bool{}
	for a := uint32(0); a < 4; a++ {
		for n := uint64(0); n < 4; n++ {
			id := p.ChildOf(a, n)
			if seen[id] {
				t.Fatalf("ChildOf(%d, %d) repeats an ID", a, n)
			}
			seen[id] = true
		}
	}
	c := NewChildren(p, 2)
	if _, ok := c.Claim(p.ChildOf(2, 0)); !ok {
		t.Fatal("attempt 2 refused its own child")
	}
	if _, ok := c.Claim(p.Child(1)); !ok {
		t.Fatal("attempt 2 refused a legacy child ID")
	}
	if _, ok := c.Claim(p.ChildOf(1, 2)); ok {
		t.Fatal("attempt 2 took attempt 1's child ID")
	}
	if _, ok := NewChildren(p, 0).Claim(p.ChildOf(1, 0)); ok {
		t.Fatal("attempt 0 took attempt 1's child ID")
	}
	if _, ok := NewChildren(p, 1).Claim(NewTaskID().ChildOf(1, 0)); ok {
		t.Fatal("another task's child accepted")
	}
}

// A generator's completion object is its task's, neither a put nor any
// return or item index a host accepts.
func TestCompletion(t *testing.T) {
	task := NewTaskID()
	c := task.Completion()
	if c.Task() != task || c.IsPut() || !c.IsCompletion() || task.Return(0).IsCompletion() {
		t.Fatalf("completion %s: task %s, put %v", c, c.Task(), c.IsPut())
	}
	if c.ReturnIndex() < 1<<30 {
		t.Fatalf("completion index %d is within the return indices", c.ReturnIndex())
	}
}
