package refcount

import (
	"reflect"
	"testing"

	"github.com/rayhost/rayhost/internal/ids"
)

// TestCounterActorHandles: an actor handle is a ref to the actor's
// creation return (here r1, actor t1): it lives while its creator, a task
// that takes it as an argument, or an object that contains it references
// it; the owner kills the actor when it is freed.
func TestCounterActorHandles(t *testing.T) {
	contain := func(obj, x ids.ObjectID) step {
		return func(c *Counter) []Action { c.Contain(obj, x); return nil }
	}
	addArg := func(x ids.ObjectID) step {
		return func(c *Counter) []Action { c.AddArg(t2, x); return nil }
	}
	tests := []struct {
		name  string
		steps []step
		want  []Action
	}{
		{"the creator ends: freed", []step{submit(attempt, t1), drop(attempt)}, []Action{free(r1)}},
		{"a task given the handle keeps it until it ends",
			[]step{submit(attempt, t1), submit(attempt, t2), addArg(r1), drop(attempt), ended(t2, false)},
			[]Action{free(r1)}},
		{"an object containing it keeps it until freed",
			[]step{submit(attempt, t1), create(driver, p1), sealed(p1), contain(p1, r1), drop(attempt), release(driver, p1, 1)},
			[]Action{free(p1), free(r1)}},
		{"a detached holder keeps it",
			[]step{submit(attempt, t1), add(Holder("detached:t1"), r1, "", 1), drop(attempt)}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := New()
			var got []Action
			for _, s := range tc.steps {
				got = s(c)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("last step: %v, want %v", got, tc.want)
			}
		})
	}

	t.Run("queries", func(t *testing.T) {
		c := New()
		c.Submit(attempt, t1, []ids.ObjectID{r1}, nil)
		c.Submit(attempt, t2, []ids.ObjectID{r2}, nil)
		c.Create(attempt, p1)
		if c.Holds(attempt, r1) != 1 || c.Holds(driver, r1) != 0 {
			t.Fatal("Holds")
		}
		if !c.AddArg(t2, r1) || !c.HasArg(t2, r1) || c.HasArg(t1, r1) || c.AddArg(t3, r1) {
			t.Fatal("AddArg/HasArg")
		}
		c.Sealed(p1, nil)
		if !c.Contain(p1, r1) || !c.Contains(p1, r1) || c.Contains(p1, r2) || c.Contain(p1, p1) || c.Contain(p2, r1) {
			t.Fatal("Contain/Contains")
		}
		c.TaskEnded(t2, false)
		if c.AddArg(t2, r1) {
			t.Fatal("AddArg on an ended task")
		}
	})
}
