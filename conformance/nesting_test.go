package conformance

import (
	"fmt"
	"testing"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/host"
)

// Item 3. Ray's guide, "Nested Remote Functions" ("Yielding Resources
// While Blocked"): "Ray will release CPU resources when being blocked.
// This prevents deadlock cases where the nested tasks are waiting for the
// CPU resources held by the parent task." Tasks wait for resources, they
// do not fail for want of them: 1,000 chains f → get(g) → get(h) on one
// CPU all finish, and the CPUs are all free afterwards.
func TestItem03NestedChainsOnOneCPU(t *testing.T) {
	for _, c := range []struct {
		name string
		fn   string
		n    int
	}{
		{"1000 chains of 1-CPU tasks", "chain_f", 1000},
		{"500 chains of 0.5-CPU tasks", "frac_f", 500},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := ownHost(t, func(cfg *host.Config) { cfg.NumCPUs, cfg.Workers = 1, 1 })
			ctx := guarded(t)
			calls := make([]client.Call, c.n)
			for i := range calls {
				calls[i] = client.Call{Module: e.mod, Function: c.fn, Args: []any{i}}
			}
			refs, err := e.c.SubmitBatch(ctx, calls)
			if err != nil {
				t.Fatal(err)
			}
			failed := 0
			for i, r := range refs {
				var got int
				if err := e.c.Get(ctx, r[0], &got); err != nil {
					if failed++; failed <= 3 {
						t.Errorf("chain %d: %v", i, err)
					}
					continue
				}
				if got != i {
					t.Errorf("chain %d returned %d", i, got)
				}
			}
			if failed > 0 {
				t.Fatalf("%d of %d chains failed, want all finished", failed, c.n)
			}
			e.cpusBackToTotal(t, ctx)
		})
	}
}

// Item 4. The same rule for actors: Ray "will release CPU resources when
// being blocked", an actor method blocked in ray.get included; and Ray's
// resources guide: "By default, actors use 1 CPU for scheduling and 0 CPU
// for running." After several calls blocked in Get, every CPU is free
// again and later tasks run.
func TestItem04ActorBlockedGetKeepsNoCPU(t *testing.T) {
	e := ownHost(t, nil) // 2 CPUs
	for _, inFlight := range []bool{false, true} {
		t.Run(fmt.Sprintf("calls in flight %v", inFlight), func(t *testing.T) {
			ctx := guarded(t)
			var sum int
			e.mustCall(t, ctx, "probe_actor_blocked_get", &sum, 4, inFlight)
			if sum != 1+2+3+4 {
				t.Fatalf("the blocked calls returned %d in all, want 10", sum)
			}
			e.cpusBackToTotal(t, ctx)
			refs := make([]client.ObjectRef, 4)
			for i := range refs {
				r, err := e.c.Submit(ctx, e.mod, "add", i, 1)
				if err != nil {
					t.Fatal(err)
				}
				refs[i] = r
			}
			for i, r := range refs {
				var got int
				if err := e.c.Get(ctx, r, &got); err != nil || got != i+1 {
					t.Fatalf("a task after the blocked calls: %d, %v", got, err)
				}
			}
		})
	}
}
