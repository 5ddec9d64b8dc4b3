package conformance

import (
	"errors"
	"strings"
	"testing"

	"github.com/rayhost/rayhost/client"
)

// The tests of this file share one host: options, Wait and argument
// errors.
func optionsHost(t *testing.T) *env { return sharedHost(t, "options", nil) }

// Item 7. Ray validates options when a call is made
// (python/ray/_private/ray_option_utils.py): max_retries "only accepts
// None, 0, -1 or a positive integer, where -1 represents infinity"
// (likewise max_restarts and max_task_retries); a resource quantity
// "cannot be negative", and "The precision of the fractional quantity of
// resource … cannot go beyond 0.0001".
func TestItem07OptionsAreValidated(t *testing.T) {
	e := optionsHost(t)
	ctx := guarded(t)
	t.Run("guest SDK", func(t *testing.T) {
		got := e.probe(t, ctx, "probe_validate_options")
		expectSteps(t, got, [][2]string{
			{"task MaxRetries(-5)", "refused:ErrBadArgument"},
			{"task MaxRetries(-1)", "accepted"},
			{"task NumCPUs(1e-7)", "refused:ErrBadArgument"},
			{"task NumGPUs(1e-7)", "refused:ErrBadArgument"},
			{"task Resources(disk: 1e-7)", "refused:ErrBadArgument"},
			{"task NumCPUs(-2)", "refused:ErrBadArgument"},
			{"task NumGPUs(-1)", "refused:ErrBadArgument"},
			{"task NumCPUs(0.0001)", "accepted"},
			{"task NumCPUs(0.5)", "accepted"},
			{"actor MaxRestarts(-5)", "refused:ErrBadArgument"},
			{"actor MaxTaskRetries(-5)", "refused:ErrBadArgument"},
			{"actor MaxRestarts(-1)", "accepted"},
		})
	})
	t.Run("client", func(t *testing.T) {
		for _, c := range []struct {
			name   string
			call   client.Call
			refuse bool
		}{
			{"MaxRetries -5", client.Call{MaxRetries: ptr[int32](-5)}, true},
			{"MaxRetries -1", client.Call{MaxRetries: ptr[int32](-1)}, false},
			{"NumCPUs 1e-7", client.Call{NumCPUs: ptr(1e-7)}, true},
			{"NumGPUs 1e-7", client.Call{NumGPUs: 1e-7}, true},
			{"custom resource 1e-7", client.Call{Resources: map[string]float64{"disk": 1e-7}}, true},
			{"NumCPUs -2", client.Call{NumCPUs: ptr(-2.0)}, true},
			{"NumGPUs -1", client.Call{NumGPUs: -1}, true},
			{"NumCPUs 0.0001", client.Call{NumCPUs: ptr(0.0001)}, false},
		} {
			t.Run(c.name, func(t *testing.T) {
				call := c.call
				call.Module, call.Function, call.Args = e.mod, "add", []any{1, 2}
				refs, err := e.c.SubmitCall(ctx, call)
				if c.refuse {
					if !errors.Is(err, client.ErrInvalidArgument) {
						if err == nil {
							_ = e.c.Cancel(ctx, refs[0], true, true)
						}
						t.Fatalf("submit: %v; want ErrInvalidArgument", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("submit: %v; want it accepted", err)
				}
				var sum int
				if err := e.c.Get(ctx, refs[0], &sum); err != nil || sum != 3 {
					t.Fatalf("the accepted call: %d, %v", sum, err)
				}
			})
		}
	})
}

// Item 8. Ray's own tests of ray.wait (python/ray/tests/test_basic_2.py):
// "Make sure it is possible to call wait with an empty list." —
// ray.wait([]) returns ([], []).
func TestItem08WaitOnEmptyList(t *testing.T) {
	e := optionsHost(t)
	ctx := guarded(t)
	t.Run("guest SDK", func(t *testing.T) {
		got := e.probe(t, ctx, "probe_wait_empty")
		expectSteps(t, got, [][2]string{
			{"Wait(nil, 1, no timeout)", "ready 0, not ready 0"},
			{"Wait([], 1, no timeout)", "ready 0, not ready 0"},
		})
	})
	t.Run("client", func(t *testing.T) {
		for _, refs := range [][]client.ObjectRef{nil, {}} {
			ready, notReady, err := e.c.Wait(ctx, refs, 1, -1)
			if err != nil || len(ready) != 0 || len(notReady) != 0 {
				t.Fatalf("Wait(%v): ready %v, not ready %v, %v; want both empty, no error", refs, ready, notReady, err)
			}
		}
	})
}

// Ray's ray.wait: "Returns: A list of object refs that are ready and a
// list of the remaining object refs", at most num_returns ready, and
// "duplicate object refs are not allowed"; its loop of wait(refs,
// num_returns=1) handles results as they come. The SDK remembers
// readiness between calls (issue 17), which must change none of it.
func TestWaitLoopAndEdges(t *testing.T) {
	e := optionsHost(t)
	expectSteps(t, e.probe(t, guarded(t), "probe_wait_loop"), [][2]string{
		{"Wait(refs, 1) in a loop over 40 refs", "40 calls, 40 values, 0 wrong answers"},
		{"Wait(40 ready refs, 3)", "ready 3, not ready 37"},
		{"the ready ones are the first three", "true"},
		{"Wait([r, a copy of r], 1)", "ErrBadArgument"},
		{"then Wait([r6, r7], 1)", "true"},
		{"Wait([pending, ready], 2, timeout 0)", "ready 1, not ready 1"},
		{"Wait([pending, ready], 1, timeout 0) gives the ready one", "true"},
	})
}

// Item 9. Ray's task fault tolerance guide: the wrapped exception "will be
// thrown to any worker that tries to get the result, either by calling
// ray.get or if the worker is executing another task that depends on the
// object"; a task's arguments are resolved in order (the worker raises the
// first argument that holds an error), so with several failed arguments
// the first one's failure is reported, every time.
func TestItem09FirstFailedArgumentIsReported(t *testing.T) {
	e := optionsHost(t)
	ctx := guarded(t)
	const runs = 20
	sums := make([]client.ObjectRef, runs)
	for i := range sums {
		// The first argument fails last, so an implementation that
		// reports whichever failure it saw first reports another one.
		first, err1 := e.c.Submit(ctx, e.mod, "fail_after", "first argument", 100)
		second, err2 := e.c.Submit(ctx, e.mod, "fail", "second argument")
		third, err3 := e.c.Submit(ctx, e.mod, "fail", "third argument")
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatal(err)
		}
		sum, err := e.c.Submit(ctx, e.mod, "add3", first, second, third)
		if err != nil {
			t.Fatal(err)
		}
		sums[i] = sum
	}
	for i, sum := range sums {
		err := e.c.Get(ctx, sum, new(int))
		if err == nil {
			t.Fatalf("run %d: add3 of three failed arguments succeeded", i)
		}
		root := taskError(t, err)
		for root.Cause != nil {
			root = root.Cause
		}
		if !strings.Contains(root.Message, "first argument") {
			t.Errorf("run %d: the reported failure is %q, want the first argument's: %v", i, root.Message, err)
		}
	}
}
