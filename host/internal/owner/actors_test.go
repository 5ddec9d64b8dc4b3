package owner

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
)

// TestActors: actors are created by guests (the test guest's functions
// make a Counter and call it); calls run in submission order on one
// instance that keeps its state.
func TestActors(t *testing.T) {
	f := newFixture(t, nil)
	t.Run("calls from one caller run in order", func(t *testing.T) {
		var seen []int
		f.call(t, "actor_order", &seen, 1000)
		if len(seen) != 1000 {
			t.Fatalf("the actor saw %d calls, want 1000", len(seen))
		}
		for i, v := range seen {
			if v != i {
				t.Fatalf("call %d ran in place %d", v, i)
			}
		}
	})
	tests := []struct {
		name, fn string
		args     []any
		want     string // the JSON result, or a part of it
	}{
		{"a task calls the actor through a handle it received; the state is kept", "actor_via_task", nil, "11"},
		{"a method error fails only that call", "error_survives", nil, "7"},
		{"a named actor is found by name", "make_named", []any{"lookup-me", 0}, "5"},
		{"…from another task", "named_incr", []any{"lookup-me"}, "6"},
		{"a second actor with the same name is refused", "duplicate_name", []any{"lookup-me"}, "already exists in namespace"},
		{"kill fails pending calls with ErrActorDied", "kill_pending", nil, "true"},
		{"cancel drops a queued call", "cancel_queued_call", nil, "1"},
		{"a method that runs out of memory restarts the actor", "oom_restarts", nil, "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var raw json.RawMessage
			f.call(t, tt.fn, &raw, tt.args...)
			if !strings.Contains(string(raw), tt.want) {
				t.Fatalf("%s = %s, want %s", tt.fn, raw, tt.want)
			}
		})
	}
	t.Run("the actors are listed", func(t *testing.T) {
		named := 0
		for _, a := range f.api.Actors() { // all Counters
			if a.Class != "Counter" {
				t.Fatalf("actor of class %q", a.Class)
			}
			if a.Name == "lookup-me" && a.State == "alive" {
				named++
			}
		}
		if named != 1 {
			t.Fatalf("%d live actors named lookup-me, want 1: %+v", named, f.api.Actors())
		}
	})
}

// TestActorRestart: an actor whose worker dies restarts (its constructor
// runs again, so its state is fresh) while MaxRestarts allows; then it is
// dead.
func TestActorRestart(t *testing.T) {
	f := newFixture(t, nil)
	var n int
	f.call(t, "make_named", &n, "phoenix", 1)
	a := f.actorNamed(t, "phoenix")
	f.killActorWorker(t, a)
	// The creation runs again: its worker's death is handled, and calls
	// queue for the new instance.
	f.waitState(t, a.id, stateRetried)
	f.call(t, "named_incr", &n, "phoenix")
	if n != 1 {
		t.Fatalf("after a restart the counter is %d, want 1 (state reset by the constructor)", n)
	}
	if got := f.transitions(a.id); !strings.HasSuffix(got, "finished/0 retried/0 pending_resources/1 scheduled/1 running/1 finished/1") {
		t.Fatalf("the creation's events: %s", got)
	}

	f.killActorWorker(t, a)
	_, refs := f.submit(t, "named_incr", nil, "phoenix")
	// Dead, or (its name released) not found: either way never a result.
	te := f.failure(t, refs[0])
	if !causedBy(te, abi.ErrorActorDied) && !strings.Contains(te.Message, "not found") {
		t.Fatalf("a call after MaxRestarts: %+v", te)
	}
	for _, x := range f.api.Actors() {
		if x.Name == "phoenix" && x.State != "dead" {
			t.Fatalf("actor state %s after its last restart", x.State)
		}
	}
	var sum int
	f.call(t, "add", &sum, 1, 2)
	if sum != 3 {
		t.Fatalf("add(1, 2) = %d", sum)
	}
}

// actorNamed returns the actor named name (in the default namespace).
func (f *fixture) actorNamed(t testing.TB, name string) *actor {
	t.Helper()
	f.o.mu.Lock()
	defer f.o.mu.Unlock()
	for _, a := range f.o.actors {
		if a.name == name {
			return a
		}
	}
	t.Fatalf("no actor named %q", name)
	return nil
}

// killActorWorker kills the worker that keeps a's instance.
func (f *fixture) killActorWorker(t testing.TB, a *actor) {
	t.Helper()
	f.o.mu.Lock()
	w := a.worker
	f.o.mu.Unlock()
	if w == nil {
		t.Fatalf("actor %s has no worker (%s)", a.id, a.state)
	}
	w.kill()
}
