package ids

import "testing"

func TestChildren(t *testing.T) {
	p, other := NewTaskID(), NewTaskID()
	c := NewChildren(p)
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
	if _, ok := NewChildren(p).Claim(p.Child(0)); !ok {
		t.Error("a new attempt cannot submit its first child")
	}
}

func TestChildrenManyInOrder(t *testing.T) {
	p := NewTaskID()
	c := NewChildren(p)
	for n := range uint64(10_000) {
		if _, ok := c.Claim(p.Child(n)); !ok {
			t.Fatalf("child %d refused", n)
		}
	}
	if len(c.pending) > 4*ChildWindow+ChildWindow {
		t.Fatalf("%d IDs pending", len(c.pending))
	}
}
