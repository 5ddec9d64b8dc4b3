package owner

import (
	"strings"
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// actorState returns the state of the actor with hex ID id ("" if not
// listed).
func (f *fixture) actorState(id string) string {
	for _, a := range f.api.Actors() {
		if a.ID == id {
			return a.State
		}
	}
	return ""
}

// waitActorState waits until the actor id is in state.
func (f *fixture) waitActorState(t testing.TB, id, state string) {
	t.Helper()
	waitUntil(t, "actor "+id+" "+state, func() bool { return f.actorState(id) == state })
}

// actorCause returns why the actor id died.
func (f *fixture) actorCause(id string) string {
	f.o.mu.Lock()
	defer f.o.mu.Unlock()
	for _, a := range f.o.actors {
		if a.id.String() == id {
			return a.cause
		}
	}
	return ""
}

// TestActorLifetime: an actor fate-shares with the task that created it,
// unless it is detached or a handle to it is held elsewhere (as an
// argument, inside a value).
func TestActorLifetime(t *testing.T) {
	f := newFixture(t, nil)

	t.Run("an owned actor dies when its owner ends; its name is freed", func(t *testing.T) {
		var id string
		f.call(t, "lt_make", &id, "owned", false)
		f.waitActorState(t, id, "dead")
		if c := f.actorCause(id); !strings.Contains(c, "owner ended") {
			t.Fatalf("cause %q", c)
		}
		_, refs := f.submit(t, "named_incr", nil, "owned")
		if te := f.failure(t, refs[0]); !strings.Contains(te.Message, "not found") {
			t.Fatalf("a call by name after the owner ended: %+v", te)
		}
		var again string
		f.call(t, "lt_make", &again, "owned", false) // the name is free again
	})

	t.Run("a detached actor outlives its owner", func(t *testing.T) {
		var id string
		f.call(t, "lt_make", &id, "kept", true)
		var n int
		f.call(t, "named_incr", &n, "kept") // after lt_make ended
		if n != 2 || f.actorState(id) != "alive" {
			t.Fatalf("the detached actor: count %d, state %s", n, f.actorState(id))
		}
		var killed bool
		f.call(t, "lt_kill_named", &killed, "kept")
		f.waitActorState(t, id, "dead")
	})

	t.Run("a handle inside a result keeps the actor alive; its reader may use and kill it", func(t *testing.T) {
		_, refs := f.submit(t, "lt_return_handle", nil)
		var h struct {
			ActorID string `json:"actor_id"`
		}
		f.result(t, refs[0], &h)
		if f.actorState(h.ActorID) != "alive" {
			t.Fatalf("the actor whose handle a live result holds is %s", f.actorState(h.ActorID))
		}
		var n int
		f.call(t, "lt_use_and_kill", &n, ref{refs[0]})
		if n != 2 {
			t.Fatalf("the call through the returned handle counted %d, want 2", n)
		}
		f.waitActorState(t, h.ActorID, "dead")
		if c := f.actorCause(h.ActorID); c != "it was killed" {
			t.Fatalf("cause %q, want a kill by its reader", c)
		}
	})

	t.Run("handles a running task drops are given back: their actors die", func(t *testing.T) {
		var dead int
		f.call(t, "lt_drop_handles", &dead, 3)
		if dead != 3 {
			t.Fatalf("%d of 3 actors whose handles were dropped died while their creator ran", dead)
		}
	})

	t.Run("max_concurrency runs calls at once: a barrier opens", func(t *testing.T) {
		var got string
		f.call(t, "lt_concurrent", &got)
		if got != "0 [true true true]" {
			t.Fatalf("a gate on an actor with MaxConcurrency(4): %q, want 0 ready before it opened, then [true true true]", got)
		}
	})

	t.Run("killing a concurrent actor fails every call it runs", func(t *testing.T) {
		var died int
		f.call(t, "lt_concurrent_kill", &died)
		if died != 3 {
			t.Fatalf("%d of 3 running calls failed with ErrActorDied", died)
		}
	})

	t.Run("a task given the handle keeps the actor alive after its creator ended", func(t *testing.T) {
		actor, later := f.passOn(t, 300)
		var n int
		f.result(t, later, &n)
		if n != 1 {
			t.Fatalf("the later call counted %d, want 1", n)
		}
		f.waitActorState(t, actor, "dead") // its last handle went with the task
	})
}

// passOn runs lt_pass_on(ms): it returns the actor it made and the ref of
// the call it left behind.
func (f *fixture) passOn(t testing.TB, ms int) (string, ids.ObjectID) {
	t.Helper()
	var p struct {
		Actor string `json:"actor"`
		Later struct {
			ObjectID string `json:"object_id"`
		} `json:"later"`
	}
	f.call(t, "lt_pass_on", &p, ms)
	id, err := ids.ParseObjectID(p.Later.ObjectID)
	if err != nil {
		t.Fatal(err)
	}
	return p.Actor, id
}

func mustTaskID(t testing.TB, s string) ids.TaskID {
	t.Helper()
	id, err := ids.ParseTaskID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestActorLifetimeAttacks: a forged handle (an actor's ID written into a
// value) neither kills an actor nor keeps it alive; floods of handles
// leave no count behind; detached actors are capped.
func TestActorLifetimeAttacks(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxWorkers = 6 })

	t.Run("a forged handle kills nothing", func(t *testing.T) {
		var id string
		f.call(t, "lt_make", &id, "", true) // unnamed: only its ID is known
		var done bool
		f.call(t, "lt_forge_kill", &done, id)
		if st := f.actorState(id); st != "alive" {
			t.Fatalf("after a kill through a forged handle the actor is %s", st)
		}
		f.o.mu.Lock()
		a := f.o.actors[mustTaskID(t, id)]
		f.o.mu.Unlock()
		if err := f.o.acts.killActor(a.id, true); err != nil { // the operator may
			t.Fatal(err)
		}
		f.waitActorState(t, id, "dead")
	})

	t.Run("a forged handle keeps nothing alive", func(t *testing.T) {
		// The owner (lt_pass_on) ends at once; its actor lives while the
		// task it gave the handle to runs. The attacker stores forged
		// handles in a value that outlives both.
		actor, later := f.passOn(t, 2000)
		var forged struct {
			Blocked struct {
				ObjectID string `json:"object_id"`
			} `json:"blocked"`
		}
		f.call(t, "lt_forge_keep", &forged, actor) // runs while lt_later sleeps
		blocked, err := ids.ParseObjectID(forged.Blocked.ObjectID)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		f.result(t, later, &n)
		f.waitActorState(t, actor, "dead") // while the blocked task still runs
		if err := f.api.Cancel(blocked, true, true); err != nil {
			t.Fatal(err)
		}
		f.o.refs.mu.Lock()
		held := f.o.refs.c.Counted(abi.ActorRef(mustTaskID(t, actor)))
		f.o.refs.mu.Unlock()
		if held {
			t.Fatal("the dead actor's ref is still counted: the forged handles kept it")
		}
	})

	t.Run("a handle flood leaves no count behind", func(t *testing.T) {
		var id string
		f.call(t, "lt_handle_flood", &id, "flooded", 2000)
		f.waitActorState(t, id, "dead")
	})

	t.Run("detached actors are capped at MaxWorkers", func(t *testing.T) {
		var made []string
		f.call(t, "lt_detached_flood", &made, 10)
		refused := 0
		for _, id := range made {
			if strings.Contains(f.actorCause(id), "(MaxWorkers)") {
				refused++
			}
		}
		if refused != 10-6 {
			t.Fatalf("%d of 10 detached creations refused with MaxWorkers 6, want 4", refused)
		}
		for _, id := range made {
			if !strings.Contains(f.actorCause(id), "(MaxWorkers)") {
				f.waitActorState(t, id, "alive") // they outlived the flood
				if err := f.o.acts.killActor(mustTaskID(t, id), true); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, id := range made {
			f.waitActorState(t, id, "dead")
		}
		var n int
		f.call(t, "add", &n, 1, 2) // the host still serves
	})
}
