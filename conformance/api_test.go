//go:build conformance_api

// The API issue 15 asks for, specified as tests: they and the guest's
// api.go compile once the SDK has that API (go test -tags conformance_api
// ./conformance/). See README.md.

package conformance

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
)

func apiHost(t *testing.T) *env { return sharedHost(t, "api", nil) }

// Ray's guide: "Remote functions can call other remote functions" with
// any arguments a Python function takes; nothing limits their number.
func TestAPIFunctionsWithMoreArguments(t *testing.T) {
	e := apiHost(t)
	ctx := guarded(t)
	var sum int
	e.mustCall(t, ctx, "api_sum5", &sum, 1, 2, 3, 4, 5)
	if sum != 15 {
		t.Fatalf("api_sum5(1..5) from the client = %d", sum)
	}
	expectSteps(t, e.probe(t, ctx, "api_probe_many_args"), [][2]string{
		{"sum4(1, 2, 3, 4)", "10"},
		{"sum5(1, ref 2, 3, put 4, 5)", "15"},
	})
}

// Ray's actor methods take any arguments, and "num_returns" applies to
// them as to tasks ("@ray.method(num_returns=2)", Ray's actors guide).
func TestAPIActorMethodsWithMoreArgumentsAndReturns(t *testing.T) {
	e := apiHost(t)
	expectSteps(t, e.probe(t, guarded(t), "api_probe_methods"), [][2]string{
		{"add_three(1, 2, ref 3)", "6"},
		{"before_after(4): before", "6"},
		{"before_after(4): after", "10"},
		{"three_views: int", "10"},
		{"three_views: string", "10"},
		{"three_views: list", "[10]"},
	})
}

// Ray's generators guide: generators work for actor methods too ("Ray
// Generator … can be used with actor methods"), each yield an object the
// caller gets before the method ends.
func TestAPIGeneratorMethodsOnActors(t *testing.T) {
	e := apiHost(t)
	expectSteps(t, e.probe(t, guarded(t), "api_probe_generator_method"), [][2]string{
		{"count_up(3) items", "[1 2 3]"},
		{"the count after the generator", "3"},
	})
}

// Ray's actors guide, "Threaded Actors": "you can use the max_concurrency
// Actor options"; Ray's own tests use a SignalActor whose wait() blocks
// callers until send() — which needs calls that run at once.
func TestAPIMaxConcurrencyBarrier(t *testing.T) {
	e := apiHost(t)
	expectSteps(t, e.probe(t, guarded(t), "api_probe_barrier"), [][2]string{
		{"waiters done before send", "0"},
		{"send", "true"},
		{"waiters after send", "[true true true]"},
	})
}

// ray.wait takes "object_refs: List of ObjectRefs or ObjectRefGenerators"
// of any values; Go needs an untyped view of refs for that.
func TestAPIWaitOverRefsOfDifferentTypes(t *testing.T) {
	e := apiHost(t)
	expectSteps(t, e.probe(t, guarded(t), "api_probe_wait_any"), [][2]string{
		{"WaitAny([int, string], 2)", "ready 2, not ready 0"},
		{"ready keeps the input order", "true"},
	})
}

// Ray's ObjectRefGenerator.completed(): "Returns an ObjectRef that will be
// ready once the generator task completes"; ray.cancel takes "ObjectRef
// or ObjectRefGenerator".
func TestAPIGeneratorCompletedAndCancel(t *testing.T) {
	e := apiHost(t)
	got := e.probe(t, guarded(t), "api_probe_generator_completed")
	expectSteps(t, got, [][2]string{
		{"Completed of a finished generator", "ready"},
		{"first item of the endless generator", "got"},
		{"Completed of a running generator is ready", "false"},
		{"cancel the generator", "done"},
		{"Completed after cancel", "ErrTaskCancelled"},
	})
}

// Ray's task fault tolerance guide: retry_exceptions "is False by
// default"; .options(retry_exceptions=False) turns it off again for one
// call of a function registered with it.
func TestAPIRetryExceptionsOffAgain(t *testing.T) {
	e := apiHost(t)
	expectSteps(t, e.probe(t, guarded(t), "api_probe_retry_off"), [][2]string{
		{"registered with RetryExceptions()", "1"},
		{"then Options(NoRetryExceptions())", "ErrTaskFailed"},
	})
}

// Ray's actor fault tolerance guide ("Actor creator failure"): "if the
// owner of an actor dies, then the actor will also fate-share with the
// owner", and "Detached actors do not have an owner process and are
// cleaned up when the Ray cluster is destroyed" (lifetime="detached",
// ray.Detached()).
func TestAPIActorLifetime(t *testing.T) {
	e := apiHost(t)
	ctx := guarded(t)
	stamp := time.Now().UnixNano()
	owned, detached := fmt.Sprintf("owned-%d", stamp), fmt.Sprintf("detached-%d", stamp)
	var n int
	e.mustCall(t, ctx, "api_make_named", &n, owned, false)
	e.mustCall(t, ctx, "api_make_named", &n, detached, true)

	eventually(t, "the actor whose owner ended is dead", func() (bool, string) {
		actors, err := e.c.ListActors(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, a := range actors {
			if a.Name == owned {
				return a.State == "dead", "it is " + a.State
			}
		}
		return true, "" // no longer listed
	})
	err := e.call(ctx, client.Call{Function: "api_named_incr", Args: []any{owned}}, &n)
	if err == nil {
		t.Fatalf("a call on the actor whose owner ended returned %d", n)
	}

	if err := e.call(ctx, client.Call{Function: "api_named_incr", Args: []any{detached}}, &n); err != nil || n != 2 {
		t.Fatalf("the detached actor after its creator ended: %d, %v; want 2 (alive, state kept)", n, err)
	}
	var killed bool
	if err := e.call(ctx, client.Call{Function: "api_kill_named", Args: []any{detached}}, &killed); err != nil {
		t.Fatal(errors.Join(errors.New("killing the detached actor"), err))
	}
}
