package host_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/guest-sdk/ray"
	"github.com/rayhost/rayhost/internal/testutil"
)

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
				if err := testutil.KillPID(a.WorkerPID); err != nil {
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
