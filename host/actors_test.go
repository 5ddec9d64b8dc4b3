package host_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/guest-sdk/ray"
	"github.com/rayhost/rayhost/internal/testutil"
)

func TestActors(t *testing.T) {
	_, c, mod := setup(t, nil)
	tests := []struct {
		name, fn string
		args     []any
		want     string // the JSON result
	}{
		{"1,000 calls from one caller run in order", "actor_order", []any{1000}, ""},
		{"a task calls the actor through a handle it received", "actor_via_task", nil, "11"},
		{"a method error fails only that call", "error_survives", nil, "7"},
		{"kill fails pending calls with ErrActorDied", "kill_pending", nil, "true"},
		{"a named actor is found by name", "make_named", []any{"lookup-me", 0}, "5"},
		{"…from another task", "named_incr", []any{"lookup-me"}, "6"},
		{"a second actor with the same name is refused", "duplicate_name", []any{"lookup-me"}, `already exists in namespace`},
		{"cancel drops a queued call", "cancel_queued_call", nil, "1"},
		{"a method that runs out of memory restarts the actor", "oom_restarts", nil, "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var raw json.RawMessage
			mustCall(t, c, mod, tt.fn, &raw, tt.args...)
			if tt.fn == "actor_order" {
				var seen []int
				if err := json.Unmarshal(raw, &seen); err != nil || len(seen) != 1000 {
					t.Fatalf("saw %d calls: %v", len(seen), err)
				}
				for i, v := range seen {
					if v != i {
						t.Fatalf("call %d ran in place %d", v, i)
					}
				}
				return
			}
			if !strings.Contains(string(raw), tt.want) {
				t.Fatalf("%s = %s, want %s", tt.fn, raw, tt.want)
			}
		})
	}
}

// TestActorRestart: SIGKILL of an actor's worker restarts it (constructor
// run again, state reset) while MaxRestarts allows, then it is dead.
func TestActorRestart(t *testing.T) {
	_, c, mod := setup(t, nil)
	ctx := ctxFor(t, testutil.HangGuard)
	var n int
	mustCall(t, c, mod, "make_named", &n, "phoenix", 1)
	killActorWorker := func() {
		t.Helper()
		actors, err := c.ListActors(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range actors {
			if a.Name == "phoenix" && a.WorkerPID > 0 {
				if err := syscall.Kill(a.WorkerPID, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				return
			}
		}
		t.Fatalf("no live phoenix in %+v", actors)
	}
	killActorWorker()
	eventually(t, testutil.HangGuard, func() bool {
		actors, _ := c.ListActors(ctx)
		for _, a := range actors {
			if a.Name == "phoenix" && a.State == "alive" && a.Restarts == 1 {
				return true
			}
		}
		return false
	}, "the actor did not restart")
	mustCall(t, c, mod, "named_incr", &n, "phoenix")
	if n != 1 {
		t.Fatalf("after a restart the counter is %d, want 1 (state reset by the constructor)", n)
	}
	killActorWorker()
	ref, err := c.Submit(ctx, mod, "named_incr", "phoenix")
	if err != nil {
		t.Fatal(err)
	}
	err = c.Get(ctx, ref, &n)
	// Dead, or (its name released) not found: either way never a result.
	if !errors.Is(err, ray.ErrActorDied) && !strings.Contains(fmt.Sprint(err), "not found") {
		t.Fatalf("a call after MaxRestarts: %v", err)
	}
	out, _ := c.ListActors(ctx)
	for _, a := range out {
		if a.Name == "phoenix" && a.State != "dead" {
			t.Fatalf("actor state %s after its last restart", a.State)
		}
	}
	stillServes(t, c, mod)
}

var _ = client.ObjectRef{}
