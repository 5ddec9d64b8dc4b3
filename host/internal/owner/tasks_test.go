package owner

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

func TestTasks(t *testing.T) {
	f := newFixture(t, nil)

	t.Run("value in, value out", func(t *testing.T) {
		var got int
		f.call(t, "add", &got, 2, 40)
		if got != 42 {
			t.Fatalf("add(2, 40) = %d", got)
		}
	})
	t.Run("an ObjectRef argument arrives as its value", func(t *testing.T) {
		_, first := f.submit(t, "add", nil, 1, 2)
		var got int
		f.call(t, "add", &got, ref{first[0]}, ref{first[0]}) // one ref, two slots
		if got != 6 {
			t.Fatalf("add(ref, ref) = %d", got)
		}
	})
	t.Run("a put object as an argument", func(t *testing.T) {
		put := ids.NewTaskID().Put(0) // as the edge makes a client's put
		if err := f.api.Put(hangCtx(t), testCaller, put, abi.Value{Codec: abi.CodecJSON, Data: []byte("100")}); err != nil {
			t.Fatal(err)
		}
		var got int
		f.call(t, "add", &got, ref{put}, 1)
		if got != 101 {
			t.Fatalf("add(put, 1) = %d", got)
		}
	})
	t.Run("multiple returns", func(t *testing.T) {
		_, refs := f.submit(t, "three", nil)
		if len(refs) != 3 {
			t.Fatalf("three returns %d refs", len(refs))
		}
		var a int
		var b string
		var c []int
		f.result(t, refs[1], &b) // in any order
		f.result(t, refs[0], &a)
		f.result(t, refs[2], &c)
		if a != 1 || b != "two" || !slices.Equal(c, []int{3}) {
			t.Fatalf("three = %v %q %v", a, b, c)
		}
	})
	t.Run("a nested task: the guest submits children and gets them", func(t *testing.T) {
		id, refs := f.submit(t, "nested_sum", nil, 10)
		var got int
		f.result(t, refs[0], &got)
		if got != 90 {
			t.Fatalf("nested_sum(10) = %d", got)
		}
		children := 0
		evs, _ := f.o.events.list()
		for _, ev := range evs {
			if ev.Parent == id && ev.Function == "add" && ev.State == "finished" {
				children++
			}
		}
		if children != 10 {
			t.Fatalf("%d children of nested_sum finished, want 10", children)
		}
	})
	t.Run("a guest's panic fails the task with its message and stack", func(t *testing.T) {
		_, refs := f.submit(t, "panic", nil, "boom")
		te := f.failure(t, refs[0])
		if te.Kind != abi.ErrorPanic || te.Message != "boom" || te.Function != "panic" || te.Host != f.o.cfg.ID || te.Stack == "" {
			t.Fatalf("failure %+v", te)
		}
	})
	t.Run("a failed argument fails its dependents with the cause", func(t *testing.T) {
		_, bad := f.submit(t, "fail", nil, "root cause")
		_, dep := f.submit(t, "add", nil, ref{bad[0]}, 1)
		te := f.failure(t, dep[0])
		if te.Kind != abi.ErrorDependency || te.Cause == nil || te.Cause.Message != "root cause" {
			t.Fatalf("dependent failed with %+v", te)
		}
	})
}

// TestEvents: a task's events record its transitions, each attempt's.
func TestEvents(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name, fn string
		args     []any
		opts     *rayhostv1.TaskOptions
		want     string
	}{
		{"finished", "add", []any{1, 2}, nil,
			"pending_args/0 pending_resources/0 scheduled/0 running/0 finished/0"},
		{"failed", "fail", []any{"no luck"}, nil,
			"pending_args/0 pending_resources/0 scheduled/0 running/0 failed/0"},
		{"retried, then finished", "flaky", nil, &rayhostv1.TaskOptions{RetryAllExceptions: true},
			"pending_args/0 pending_resources/0 scheduled/0 running/0 retried/0 pending_resources/1 scheduled/1 running/1 finished/1"},
		{"with an ObjectRef argument", "add", []any{"ref"}, nil,
			"pending_args/0 pending_resources/0 scheduled/0 running/0 finished/0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.args) == 1 && tt.args[0] == "ref" {
				_, arg := f.submit(t, "add", nil, 1, 1)
				tt.args = []any{ref{arg[0]}, 1}
			}
			id, refs := f.submit(t, tt.fn, tt.opts, tt.args...)
			_ = f.value(t, refs[0]) // the last event is recorded before the result is sealed
			if got := f.transitions(id); got != tt.want {
				t.Fatalf("events:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
	t.Run("a failure's message is on its event", func(t *testing.T) {
		id, refs := f.submit(t, "fail", nil, "the reason")
		_ = f.value(t, refs[0])
		ev := f.waitState(t, id, stateFailed)
		if ev.Function != "fail" || !strings.Contains(ev.Message, "the reason") || ev.Host != f.o.cfg.ID {
			t.Fatalf("failed event %+v", ev)
		}
	})
	t.Run("events can be turned off", func(t *testing.T) {
		id, refs := f.submit(t, "add", &rayhostv1.TaskOptions{DisableEvents: true}, 40, 2)
		var got int
		f.result(t, refs[0], &got)
		if evs := f.transitions(id); evs != "" {
			t.Fatalf("events recorded for a task with events off: %s", evs)
		}
	})
}

// TestRetries: an application error is retried as RetryExceptions and
// MaxRetries say, and the last attempt's error is what the caller gets.
func TestRetries(t *testing.T) {
	f := newFixture(t, nil)
	zero, two := int32(0), int32(2)
	tests := []struct {
		name string
		fn   string
		args []any
		opts *rayhostv1.TaskOptions
		want int // the attempt that succeeded; -1: it fails
		// for a failure: its message and code, and the attempt that made it
		// (counting from 1)
		msg, code string
		attempt   uint32
	}{
		{"application errors are not retried by default", "flaky", nil, nil,
			-1, "first attempt fails", "transient", 1},
		{"RetryAllExceptions retries every application error", "flaky", nil, &rayhostv1.TaskOptions{RetryAllExceptions: true},
			1, "", "", 0},
		{"RetryExceptions by code", "flaky", nil, &rayhostv1.TaskOptions{RetryExceptions: []string{"transient"}},
			1, "", "", 0},
		{"RetryExceptions by another code", "flaky", nil, &rayhostv1.TaskOptions{RetryExceptions: []string{"other"}},
			-1, "first attempt fails", "transient", 1},
		{"MaxRetries 0 wins", "flaky", nil, &rayhostv1.TaskOptions{RetryAllExceptions: true, MaxRetries: &zero},
			-1, "first attempt fails", "transient", 1},
		{"retried MaxRetries times, then the last error", "fail", []any{"always"}, &rayhostv1.TaskOptions{RetryAllExceptions: true, MaxRetries: &two},
			-1, "always", "", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, refs := f.submit(t, tt.fn, tt.opts, tt.args...)
			if tt.want >= 0 {
				var got int
				f.result(t, refs[0], &got)
				if got != tt.want {
					t.Fatalf("succeeded on attempt %d, want %d", got, tt.want)
				}
				return
			}
			te := f.failure(t, refs[0])
			if te.Kind != abi.ErrorApplication || te.Message != tt.msg || te.Code != tt.code || te.Attempt != tt.attempt {
				t.Fatalf("failure %+v, want %q (code %q) of attempt %d", te, tt.msg, tt.code, tt.attempt)
			}
			if n := strings.Count(f.transitions(id), "retried/"); n != int(tt.attempt)-1 {
				t.Fatalf("%d retried events, want %d: %s", n, tt.attempt-1, f.transitions(id))
			}
		})
	}
}

// TestChildrenBounded: a parent that runs many children one after the
// other (a driver's loop) keeps only its live children for a recursive
// cancel, not an entry for every task it ever submitted; the cancel still
// reaches the one that runs.
func TestChildrenBounded(t *testing.T) {
	f := newFixture(t, nil)
	const n = 500
	parent, refs := f.submit(t, "sleeper_after", nil, n, tenMinutes)
	child := f.waitEvent(t, "the sleeper runs", func(ev TaskEvent) bool {
		return ev.Parent == parent && ev.Function == "sleeper" && ev.State == "running"
	})
	f.o.mu.Lock()
	p := f.o.tasks[parent]
	kept, hasSleeper := len(p.children), slices.Contains(p.children, child.Task)
	f.o.mu.Unlock()
	// The sleeper, and the ended children not dropped yet: fewer than
	// twice the most that were live at once (2), whatever n.
	if kept > 4 || !hasSleeper {
		t.Fatalf("after %d children the parent lists %d (the running one listed: %v)", n+1, kept, hasSleeper)
	}
	if err := f.api.Cancel(refs[0], false, true); err != nil {
		t.Fatal(err)
	}
	f.waitState(t, child.Task, stateCancelled)
}

// TestAddChild: the list's bound is its live children, and it keeps every
// one of them, whatever the order children end in.
func TestAddChild(t *testing.T) {
	for _, live := range []int{0, 1, 10, 300} {
		t.Run(fmt.Sprint(live, " live"), func(t *testing.T) {
			p := &task{id: ids.NewTaskID()}
			tasks := map[ids.TaskID]*task{}
			var running []ids.TaskID
			for k := range 10_000 {
				id := p.id.ChildOf(0, uint64(k))
				tasks[id] = &task{id: id}
				p.addChild(id, tasks)
				running = append(running, id)
				if len(running) > live { // the oldest live child ends
					delete(tasks, running[0])
					running = running[1:]
				}
				if len(p.children) > 4*live+4 {
					t.Fatalf("after %d children with %d live the parent lists %d", k+1, live, len(p.children))
				}
			}
			for _, id := range running {
				if !slices.Contains(p.children, id) {
					t.Fatalf("a live child is not listed")
				}
			}
		})
	}
}
