package conformance

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/gossip"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/testutil"
)

// pendingHost is the tests' shared host: a cluster of one, which other
// hosts could join. (A lone host, which nothing can join, fails work it
// can never run at once: a deliberate difference from Ray, whose
// autoscaler may always add a node.)
func pendingHost(t *testing.T) *env {
	return sharedHost(t, "pending", func(cfg *host.Config) {
		cc := host.DefaultClusterConfig()
		cc.Gossip.BindAddr = "127.0.0.1:0"
		cc.Gossip.Timings = gossip.FastTimings()
		cc.LoadInterval = 50 * time.Millisecond
		cc.JoinTimeout = testutil.HangGuard
		cfg.Cluster = cc
	})
}

// Item 6, tasks. Ray keeps work that no node can run pending, with a
// warning, until a node that fits joins (the raylet's warning: "The actor
// or task with ID … is infeasible and cannot currently be scheduled. It
// requires {CPU: …} for execution […] however there are no nodes in the
// cluster that can …"; Ray's
// NodeAffinitySchedulingStrategy docs contrast this: only a named node
// that is missing or infeasible makes a task "fail if soft is False").
// ray.wait docs: it returns "A list of object refs that are ready and a
// list of the remaining object refs" — a pending task's ref is among the
// remaining. The task's events say why it waits, and the cluster's status
// lists it as infeasible demand (Ray's status: "Demands: … pending
// tasks/actors").
func TestItem06InfeasibleTaskStaysPending(t *testing.T) {
	e := pendingHost(t) // 2 CPUs, no GPU
	for _, c := range []struct {
		name string
		call client.Call
	}{
		{"64 CPUs", client.Call{Function: "add", Args: []any{1, 2}, NumCPUs: ptr(64.0)}},
		{"1 GPU", client.Call{Function: "add", Args: []any{1, 2}, NumGPUs: 1}},
		{"a custom resource no host has", client.Call{Function: "add", Args: []any{1, 2}, Resources: map[string]float64{"tpu": 1}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := guarded(t)
			c.call.Module = e.mod
			refs, err := e.c.SubmitCall(ctx, c.call)
			if err != nil {
				t.Fatalf("submitting: %v; want it accepted and pending", err)
			}
			ref := refs[0]
			task := taskOf(t, ref)
			var why string
			eventually(t, "the task's events say it waits, and why", func() (bool, string) {
				evs, err := e.c.TaskEvents(ctx, task)
				if err != nil {
					return false, err.Error()
				}
				for _, ev := range evs {
					if terminal(ev.State) {
						t.Fatalf("the infeasible task ended %s: %s; want it pending", ev.State, ev.Message)
					}
					if strings.HasPrefix(ev.State, "pending") && ev.Message != "" {
						why = ev.Message
						return true, ""
					}
				}
				return false, "events: " + summary(evs)
			})
			t.Logf("why it waits: %s", why)
			eventually(t, "the cluster's status lists the infeasible demand", func() (bool, string) {
				st, err := e.c.ClusterStatus(ctx)
				if err != nil {
					return false, err.Error()
				}
				return len(st.Infeasible) > 0, fmt.Sprintf("infeasible demand %v", st.Infeasible)
			})
			ready, notReady, err := e.c.Wait(ctx, []client.ObjectRef{ref}, 1, 0)
			if err != nil || len(ready) != 0 || len(notReady) != 1 {
				t.Fatalf("Wait on the infeasible task: ready %v, not ready %v, %v; want it not ready", ready, notReady, err)
			}
			if err := e.c.Cancel(ctx, ref, false, false); err != nil {
				t.Fatalf("cancelling the pending task: %v", err)
			}
			if err := e.c.Get(ctx, ref, new(int)); !errors.Is(err, client.ErrTaskCancelled) {
				t.Fatalf("the cancelled pending task: %v; want ErrTaskCancelled", err)
			}
		})
	}
}

// Item 6, actors. Ray's ActorDiedError "could happen either because the
// actor process dies while executing a task, or because a task is
// submitted to a dead actor", and its cause "RayTaskError type means the
// actor has died because of an exception within __init__". An actor that
// no node can place waits, as a task does; ray.kill: "This will interrupt
// any running tasks on the actor, causing them to fail immediately" — its
// queued calls fail then, they do not wait forever. Ray's actor fault
// tolerance guide: "If max_restarts is set, you can also allow Ray to
// automatically restart the actor by passing no_restart=False to
// ray.kill", and "After the specified number of restarts, subsequent actor
// methods will raise a RayActorError" — whether the restarts went to
// kills or to the actor's worker dying (here: out of memory).
func TestItem06CallsOnDeadActorsFail(t *testing.T) {
	e := pendingHost(t)
	got := e.probe(t, guarded(t), "probe_actor_death")
	expectSteps(t, got, [][2]string{
		{"call on an actor whose constructor failed", "ErrActorDied"},
		{"the infeasible actor's creation after 2 s", "ErrGetTimeout"}, // still pending
		{"ready calls on the infeasible actor", "0"},
		{"kill the infeasible actor", "done"},
		{"the call on the killed infeasible actor", "ErrActorDied"},
		{"incr on a fresh actor", "1"},
		{"kill, restart allowed", "done"},
		{"incr after the restart", "1"},
		{"kill again, restart allowed", "done"},
		{"incr with no restart left", "ErrActorDied"},
		{"incr on a fresh actor that will run out of memory", "1"},
		{"the call that runs out of memory", "*"},
		{"incr after the restart", "1"},
		{"the call that runs out of memory again", "*"},
		{"incr with no restart left", "ErrActorDied"},
	})
}

// summary lists events as "state (message)".
func summary(evs []client.TaskEvent) string {
	var b strings.Builder
	for i, ev := range evs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(ev.State)
		if ev.Message != "" {
			b.WriteString(" (" + ev.Message + ")")
		}
	}
	return b.String()
}
