package conformance

import (
	"fmt"
	"testing"

	"github.com/rayhost/rayhost/client"
)

// Item 10, children. Ray's guide ("Task Events"): "By default, Ray traces
// the execution of tasks, reporting task status events"; ray list tasks
// shows each task's latest state (FINISHED, FAILED, …). A child that ends
// after its parent failed must be listed as ended, not RUNNING.
func TestItem10ChildrenOfAFailedParentEnd(t *testing.T) {
	e := sharedHost(t, "events", nil)
	parent := failParent(t, e, "error", 300)
	eventually(t, "the parent's descendants all ended", allEnded(t, e, parent))
}

// Item 10, a crashed parent. Ray's actor fault tolerance guide: "if the
// owner of an actor dies, then the actor will also fate-share with the
// owner", and its object fault tolerance guide: "Ray does not support
// recovery from owner failure". The tasks a worker submitted fate-share
// with it the same way: when the parent's worker dies, its running
// children and grandchildren (which sleep for ten minutes here) are
// killed, and their events end in a terminal state.
func TestItem10ChildrenOfACrashedParentEnd(t *testing.T) {
	e := ownHost(t, nil) // its tasks may be left running: a host of its own
	parent := failParent(t, e, "exit", 600_000)
	eventually(t, "the crashed parent's descendants all ended", allEnded(t, e, parent))
}

// failParent runs family_parent, which fails (how: "error" or "exit")
// once its child and grandchild run; they sleep ms. It returns the
// parent's task ID.
func failParent(t *testing.T, e *env, how string, ms int) string {
	t.Helper()
	ctx := guarded(t)
	refs, err := e.c.SubmitCall(ctx, client.Call{Module: e.mod, Function: "family_parent",
		Args: []any{how, ms}, MaxRetries: ptr[int32](0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.c.Get(ctx, refs[0], new(int)); err == nil {
		t.Fatal("the parent succeeded")
	}
	return taskOf(t, refs[0])
}

// allEnded is a condition for eventually: the child and grandchild of
// parent are listed, and both ended.
func allEnded(t *testing.T, e *env, parent string) func() (bool, string) {
	ctx := guarded(t)
	return func() (bool, string) {
		evs, _, err := e.c.ListTasks(ctx, "")
		if err != nil {
			return false, err.Error()
		}
		family := descendants(evs, parent)
		if len(family) < 2 {
			return false, fmt.Sprintf("%d descendants listed, want the child and the grandchild", len(family))
		}
		for _, s := range family {
			if !terminal(s.State) {
				return false, fmt.Sprintf("%s (%s) is %s", s.Function, s.TaskID, s.State)
			}
		}
		return true, ""
	}
}

// Item 10, the driver. Ray's state API lists the driver too: ray list
// tasks shows it with TYPE DRIVER_TASK, as the parent of the tasks it
// submitted (their PARENT_TASK_ID).
func TestItem10DriverTaskIsListed(t *testing.T) {
	e := sharedHost(t, "events", nil)
	ctx := guarded(t)
	if err := e.c.Run(ctx, e.mod, nil); err != nil {
		t.Fatalf("running the driver: %v", err)
	}
	eventually(t, "the driver is listed, finished, as its task's parent", func() (bool, string) {
		evs, _, err := e.c.ListTasks(ctx, "")
		if err != nil {
			return false, err.Error()
		}
		driver := ""
		for _, ev := range evs {
			if ev.Function == "driver_child" {
				driver = ev.ParentTaskID
			}
		}
		if driver == "" {
			return false, "the driver's child is not listed"
		}
		for _, s := range client.Summarize(evs) {
			if s.TaskID == driver {
				return s.State == "finished", fmt.Sprintf("the driver (%s) is %s", s.Function, s.State)
			}
		}
		return false, fmt.Sprintf("the driver %s (parent of driver_child) is not listed", driver)
	})
}

// descendants summarizes the tasks below root in the task tree.
func descendants(evs []client.TaskEvent, root string) []client.TaskSummary {
	parentOf := map[string]string{}
	for _, ev := range evs {
		if ev.ParentTaskID != "" {
			parentOf[ev.TaskID] = ev.ParentTaskID
		}
	}
	below := func(id string) bool {
		for p := parentOf[id]; p != ""; p = parentOf[p] {
			if p == root {
				return true
			}
		}
		return false
	}
	var out []client.TaskSummary
	for _, s := range client.Summarize(evs) {
		if below(s.TaskID) {
			out = append(out, s)
		}
	}
	return out
}
