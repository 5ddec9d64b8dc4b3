package conformance

import (
	"errors"
	"fmt"
	"testing"

	"github.com/rayhost/rayhost/client"
)

// The tests of this file share one host: retries of crashes and errors.
func retriesHost(t *testing.T) *env { return sharedHost(t, "retries", nil) }

// Item 1, tasks. Ray's task fault tolerance guide ("Retrying failed
// tasks"): "When a worker is executing a task, if the worker dies
// unexpectedly, either because the process crashed or because the machine
// failed, Ray will rerun the task until either the task succeeds or the
// maximum number of retries is exceeded. The default number of retries is
// 3 and can be overridden by specifying max_retries in the @ray.remote
// decorator." Its example makes the worker die with os._exit(0) and
// catches ray.exceptions.WorkerCrashedError (ErrWorkerDied) once retries
// are spent.
func TestItem01TaskExitIsAWorkerCrash(t *testing.T) {
	e := retriesHost(t)
	for _, code := range []int{0, 3} {
		t.Run(fmt.Sprintf("exit code %d", code), func(t *testing.T) {
			ctx := guarded(t)
			var attempt int
			if err := e.call(ctx, client.Call{Function: "exit_first", Args: []any{code}}, &attempt); err != nil {
				t.Fatalf("a task whose first attempt exits: %v; want it retried (default max_retries 3)", err)
			}
			if attempt != 1 {
				t.Errorf("the task succeeded on attempt %d, want 1", attempt)
			}
			for _, retries := range []int32{2, 0} {
				refs, err := e.c.SubmitCall(ctx, client.Call{Module: e.mod, Function: "exit_always", Args: []any{code}, MaxRetries: ptr(retries)})
				if err != nil {
					t.Fatal(err)
				}
				err = e.c.Get(ctx, refs[0], new(int))
				if !errors.Is(err, client.ErrWorkerDied) {
					t.Fatalf("a task that always exits, max_retries %d: %v; want ErrWorkerDied", retries, err)
				}
				if n := attemptsRun(t, e, refs[0]); n != int(retries)+1 {
					t.Errorf("max_retries %d: the task ran %d times, want %d", retries, n, retries+1)
				}
			}
		})
	}
}

// attemptsRun counts the attempts of ref's task that ran, from its
// events.
func attemptsRun(t *testing.T, e *env, ref client.ObjectRef) int {
	t.Helper()
	evs, err := e.c.TaskEvents(guarded(t), taskOf(t, ref))
	if err != nil {
		t.Fatal(err)
	}
	ran := map[int]bool{}
	for _, ev := range evs {
		if ev.State == "running" {
			ran[ev.Attempt] = true
		}
	}
	return len(ran)
}

// Item 1, actors. Ray's actor fault tolerance guide ("Actor process
// failure"): "Ray can automatically restart actors that crash
// unexpectedly. This behavior is controlled using max_restarts […] When an
// actor is restarted, its state will be recreated by rerunning its
// constructor. After the specified number of restarts, subsequent actor
// methods will raise a RayActorError." and "By default, actor tasks
// execute with at-most-once semantics (max_task_retries=0)". Its example
// crashes the actor with os._exit(0) in a method.
func TestItem01ActorExitIsAnActorDeath(t *testing.T) {
	e := retriesHost(t)
	got := e.probe(t, guarded(t), "probe_actor_exit")
	expectSteps(t, got, [][2]string{
		{"incr before the crash", "1"},
		{"the call that exits", "ErrActorDied"},
		{"incr after the restart", "1"}, // a fresh instance: state rebuilt by the constructor
		{"the call that exits again", "ErrActorDied"},
		{"incr with no restart left", "ErrActorDied"},
	})
}

// Item 2. Ray's task fault tolerance guide: Ray "will rerun the task until
// either the task succeeds or the maximum number of retries is exceeded",
// and "By default, Ray will not retry tasks upon exceptions thrown by
// application code. However, you may control whether application-level
// errors are retried […] via the retry_exceptions argument." A rerun is a
// new execution of the function: the calls it makes are made again, and
// what they return is what this attempt's calls computed — a retry never
// observes its previous attempt's results.
func TestItem02RetryNeverReadsStaleChildren(t *testing.T) {
	e := retriesHost(t)
	var got int
	e.mustCall(t, guarded(t), "retry_parent", &got)
	if got != 1 {
		t.Fatalf("attempt 1 of the parent read %d from its child, want 1 (its own child's result, not attempt 0's)", got)
	}
}

// Item 5. Ray's actor fault tolerance guide ("Actor method exceptions"):
// "Sometime you want to retry when an actor method raises exceptions. Use
// max_task_retries with retry_exceptions to retry." […] "retry_exceptions
// == True: Ray retries a method on user exception up to max_retries
// times." and "retry_exceptions == False (default): No retries for user
// exceptions."
func TestItem05ActorMethodRetryOptions(t *testing.T) {
	e := retriesHost(t)
	got := e.probe(t, guarded(t), "probe_actor_method_retry")
	expectSteps(t, got, [][2]string{
		{"fail_first without retry options", "ErrTaskFailed"},
		{"fail_first with MaxRetries(1), RetryExceptions()", "2"},
		{"fail_always with MaxRetries(2), RetryExceptions()", "ErrTaskFailed"},
		{"calls of fail_always", "3"}, // once, and two retries
	})
}
