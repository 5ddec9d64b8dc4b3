package refcount

import (
	"reflect"
	"testing"

	"github.com/rayhost/rayhost/internal/ids"
)

// TestTaskArgs: the tasks that keep an argument alive are named, pending
// ones and those kept for lineage, and the list follows the counts in
// the Snapshot.
func TestTaskArgs(t *testing.T) {
	c := New()
	c.Create(driver, p1)
	c.Submit(driver, t2, []ids.ObjectID{r2}, []ids.ObjectID{p1})
	c.Submit(driver, t3, []ids.ObjectID{r3}, []ids.ObjectID{p1, r2})
	got := c.TaskArgs()
	want := map[ids.ObjectID][]TaskArg{p1: {{Task: t2}, {Task: t3}}, r2: {{Task: t3}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("two pending tasks: %v, want %v", got, want)
	}
	c.TaskEnded(t2, true) // kept for lineage: its result r2 is live
	c.TaskEnded(t3, false)
	got = c.TaskArgs()
	want = map[ids.ObjectID][]TaskArg{p1: {{Task: t2, Lineage: true}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("t2 kept for lineage, t3 over: %v, want %v", got, want)
	}
	for _, r := range c.Snapshot() {
		if r.ID == p1 && (r.Submitted != 0 || r.Lineage != 1) {
			t.Fatalf("snapshot of p1: %+v, want lineage 1", r)
		}
	}
}
