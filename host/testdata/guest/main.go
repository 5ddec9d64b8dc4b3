// Command guest is the test guest of package host: small remote functions
// that exercise each path of the host (values, refs, nesting, failures).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

var add = ray.Func2("add", func(ctx context.Context, a, b int) (int, error) {
	return a + b, nil
})

var _ = ray.Func1("echo_bytes", func(ctx context.Context, b []byte) ([]byte, error) {
	return b, nil
})

var _ = ray.Func1("make_bytes", func(ctx context.Context, n int) ([]byte, error) {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b, nil
})

var failing = ray.Func1("fail", func(ctx context.Context, msg string) (int, error) {
	return 0, errors.New(msg)
})

var _ = ray.Func1("panic", func(ctx context.Context, msg string) (int, error) {
	panic(msg)
})

// spin burns CPU for ms milliseconds without calling the host: the case
// wazero cannot preempt.
var _ = ray.Func1("spin", func(ctx context.Context, ms int) (int, error) {
	deadline := time.Now().Add(time.Duration(ms) * time.Millisecond)
	n := 0
	for time.Now().Before(deadline) {
		for range 1000 {
			n++
		}
	}
	return n, nil
})

var _ = ray.Func1("sleep", func(ctx context.Context, ms int) (int, error) {
	return ms, ray.Sleep(ctx, time.Duration(ms)*time.Millisecond)
})

var _ = ray.Func1("nested_sum", func(ctx context.Context, n int) (int, error) {
	refs := make([]ray.ObjectRef[int], n)
	for i := range refs {
		refs[i] = add.Remote(i, i)
	}
	vals, err := ray.GetAll(ctx, refs)
	if err != nil {
		return 0, err
	}
	sum := 0
	for _, v := range vals {
		sum += v
	}
	return sum, nil
})

// get_nested receives a ref inside a value and gets it itself.
var _ = ray.Func1("get_nested", func(ctx context.Context, refs []ray.ObjectRef[int]) (int, error) {
	vals, err := ray.GetAll(ctx, refs)
	if err != nil {
		return 0, err
	}
	sum := 0
	for _, v := range vals {
		sum += v
	}
	return sum, nil
})

var _ = ray.Func1("hello", func(ctx context.Context, name string) (string, error) {
	fmt.Printf("hello, %s\n", name)
	fmt.Fprintf(os.Stderr, "to stderr\n")
	return "hi " + name, nil
})

var _ = ray.Func1("exit", func(ctx context.Context, code int) (int, error) {
	os.Exit(code)
	return 0, nil
})

// flaky fails its first attempt with an error code, then succeeds.
var _ = ray.Func0("flaky", func(ctx context.Context) (int, error) {
	if ray.Attempt(ctx) == 0 {
		return 0, ray.WithCode("transient", errors.New("first attempt fails"))
	}
	return ray.Attempt(ctx), nil
})

// hang_once sleeps ten minutes on its first attempt (for a test to kill its
// worker) and returns v at once on the others.
var _ = ray.Func1("hang_once", func(ctx context.Context, v int) (int, error) {
	if ray.Attempt(ctx) == 0 {
		return 0, ray.Sleep(ctx, 10*time.Minute)
	}
	return v, nil
})

// ticks yields 0..n-1, one every ms milliseconds; each item is the time it
// was yielded (Unix ns).
var ticks = ray.Gen2("ticks", func(ctx context.Context, n, ms int, yield func(int64) error) error {
	for range n {
		if err := ray.Sleep(ctx, time.Duration(ms)*time.Millisecond); err != nil {
			return err
		}
		if err := yield(time.Now().UnixNano()); err != nil {
			return err
		}
	}
	return nil
})

var ticksBounded = ticks.Options(ray.Backpressure(2))

var brokenStream = ray.Gen0("broken_stream", func(ctx context.Context, yield func(string) error) error {
	for _, s := range []string{"a", "b"} {
		if err := yield(s); err != nil {
			return err
		}
	}
	return errors.New("broken at item 2")
})

// firstThenWait yields 0 at once, then 1 after ms milliseconds.
var firstThenWait = ray.Gen1("first_then_wait", func(ctx context.Context, ms int, yield func(int) error) error {
	if err := yield(0); err != nil {
		return err
	}
	if err := ray.Sleep(ctx, time.Duration(ms)*time.Millisecond); err != nil {
		return err
	}
	return yield(1)
})

// streamsEarly reports whether the first item of a generator arrives while
// the generator is still running (its second item, ten minutes away, does
// not exist yet); then it cancels the generator.
var _ = ray.Func0("streams_early", func(ctx context.Context) (bool, error) {
	gen := firstThenWait.Remote(600_000)
	if _, err := gen.Next(ctx); err != nil {
		return false, err
	}
	_, notReady, err := ray.Wait(ctx, []ray.ObjectRef[int]{gen.NextRef()}, 1, 0)
	if err != nil {
		return false, err
	}
	if err := ray.Cancel(gen.NextRef(), false, true); err != nil {
		return false, err
	}
	return len(notReady) == 1, nil
})

// collectBroken returns what a consumer of broken_stream sees, in order.
var _ = ray.Func0("collect_broken", func(ctx context.Context) ([]string, error) {
	var seen []string
	for ref, err := range brokenStream.Remote().All(ctx) {
		if err != nil {
			return nil, err
		}
		v, err := ray.Get(ctx, ref)
		if err != nil {
			seen = append(seen, "error: "+err.Error())
			continue
		}
		seen = append(seen, v)
	}
	return append(seen, "end"), nil
})

// backpressureLag consumes a generator bounded to 2 unconsumed items slowly
// and returns, for each item k ≥ 2, how long after the consumer asked for
// item k-2 the item was made (≥ 0 when backpressure holds: the producer's
// yield of item k-1 returns only once item k-2 was handed out, and the
// item's time is taken after that). Times are from before the ask, so a
// slow machine cannot make the lag negative.
var _ = ray.Func0("backpressure_lag", func(ctx context.Context) ([]int64, error) {
	gen := ticksBounded.Remote(6, 10)
	var asked []int64
	var lags []int64
	for {
		asked = append(asked, time.Now().UnixNano())
		ref, err := gen.Next(ctx)
		if errors.Is(err, ray.ErrEndOfStream) {
			return lags, nil
		}
		if err != nil {
			return nil, err
		}
		at, err := ray.Get(ctx, ref)
		if err != nil {
			return nil, err
		}
		if k := len(asked) - 1; k >= 2 {
			lags = append(lags, at-asked[k-2])
		}
		if err := ray.Sleep(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
})

// nestedSleeper submits a long child and waits for it: for recursive cancel.
var sleeper = ray.Func1("sleeper", func(ctx context.Context, ms int) (int, error) {
	return ms, ray.Sleep(ctx, time.Duration(ms)*time.Millisecond)
})

var _ = ray.Func1("parent_of_sleeper", func(ctx context.Context, ms int) (int, error) {
	return ray.Get(ctx, sleeper.Remote(ms))
})

var _ = ray.Func0x3("three", func(ctx context.Context) (int, string, []int, error) {
	return 1, "two", []int{3}, nil
})

var _ = ray.Func1("uses_gpu", func(ctx context.Context, x int) (int, error) { return x, nil }, ray.NumGPUs(1))

// disk tasks hold the custom resource "disk" while they sleep.
var _ = ray.Func1("disk_task", func(ctx context.Context, ms int) (int64, error) {
	start := time.Now().UnixNano()
	return start, ray.Sleep(ctx, time.Duration(ms)*time.Millisecond)
}, ray.Resources(map[string]float64{"disk": 1}))

// getTimesOut reports whether a Get past its context's deadline fails with
// ErrGetTimeout inside a guest.
var _ = ray.Func0("get_times_out", func(ctx context.Context) (bool, error) {
	slow := sleeper.Remote(5000)
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err := ray.Get(short, slow)
	_ = ray.Cancel(slow, true, true)
	return errors.Is(err, ray.ErrGetTimeout), nil
})

// Counter is the test actor.
type Counter struct {
	N     int
	Log   []int
	Stash []ray.ObjectRef[int] // refs kept across calls
}

var counterClass = ray.Actor0("Counter", func(ctx context.Context) (*Counter, error) { return &Counter{}, nil })

var incr = ray.Method1(counterClass, "incr", func(c *Counter, ctx context.Context, by int) (int, error) {
	c.N += by
	return c.N, nil
})

var record = ray.Method1(counterClass, "record", func(c *Counter, ctx context.Context, i int) (bool, error) {
	c.Log = append(c.Log, i)
	return true, nil
})

var history = ray.Method0(counterClass, "history", func(c *Counter, ctx context.Context) ([]int, error) { return c.Log, nil })

var failing2 = ray.Method0(counterClass, "fail", func(c *Counter, ctx context.Context) (int, error) {
	return 0, errors.New("method failed")
})

var slowly = ray.Method1(counterClass, "slowly", func(c *Counter, ctx context.Context, ms int) (int, error) {
	return ms, ray.Sleep(ctx, time.Duration(ms)*time.Millisecond)
})

// actorOrder submits n calls and returns what the actor saw, in order.
var _ = ray.Func1("actor_order", func(ctx context.Context, n int) ([]int, error) {
	c := counterClass.Remote()
	for i := range n {
		record.Remote(c, i)
	}
	return ray.Get(ctx, history.Remote(c))
})

// bump calls the actor through a handle it received as an argument.
var bump = ray.Func1("bump", func(ctx context.Context, c ray.ActorHandle[Counter]) (int, error) {
	return ray.Get(ctx, incr.Remote(c, 10))
})

var _ = ray.Func0("actor_via_task", func(ctx context.Context) (int, error) {
	c := counterClass.Remote()
	if _, err := ray.Get(ctx, bump.Remote(c)); err != nil {
		return 0, err
	}
	return ray.Get(ctx, incr.Remote(c, 1)) // 11: the task's call reached the same actor
})

// makeNamed creates a named counter (restartable once) and counts to 5.
// It is detached: later tasks find it by name after this one has ended.
var _ = ray.Func2("make_named", func(ctx context.Context, name string, restarts int) (int, error) {
	c := counterClass.Options(ray.Name(name), ray.MaxRestarts(restarts), ray.Detached()).Remote()
	return ray.Get(ctx, incr.Remote(c, 5))
})

var _ = ray.Func1("named_incr", func(ctx context.Context, name string) (int, error) {
	c, err := ray.GetActor[Counter](ctx, name, "")
	if err != nil {
		return 0, err
	}
	return ray.Get(ctx, incr.Remote(c, 1))
})

// named_incr_by calls incr on the named actor with by, an ObjectRef (it
// travels as a ref, nested in a list).
var _ = ray.Func2("named_incr_by", func(ctx context.Context, name string, by []ray.ObjectRef[int]) (int, error) {
	c, err := ray.GetActor[Counter](ctx, name, "")
	if err != nil {
		return 0, err
	}
	return ray.Get(ctx, incr.Remote(c, by[0]))
})

// duplicateName reports the error of creating a second actor with a name.
var _ = ray.Func1("duplicate_name", func(ctx context.Context, name string) (string, error) {
	c := counterClass.Options(ray.Name(name)).Remote()
	if err := c.Ready(ctx); err != nil {
		return err.Error(), nil
	}
	return "", errors.New("a second actor with the same name was created")
})

// killPending kills an actor with calls queued; it reports whether they all
// failed with ErrActorDied.
var _ = ray.Func0("kill_pending", func(ctx context.Context) (bool, error) {
	c := counterClass.Remote()
	busy := slowly.Remote(c, 5000)
	queued := incr.Remote(c, 1)
	if err := c.Ready(ctx); err != nil {
		return false, err
	}
	if err := ray.Kill(c, true); err != nil {
		return false, err
	}
	_, err1 := ray.Get(ctx, busy)
	_, err2 := ray.Get(ctx, queued)
	_, err3 := ray.Get(ctx, incr.Remote(c, 1)) // after death
	return errors.Is(err1, ray.ErrActorDied) && errors.Is(err2, ray.ErrActorDied) && errors.Is(err3, ray.ErrActorDied), nil
})

// cancelQueued cancels a call waiting behind a slow one: it is dropped,
// the actor goes on, and the count shows the dropped call never ran. The
// slow call is long enough (3 s) for the cancel to arrive while the other
// still waits, on a loaded machine too.
var _ = ray.Func0("cancel_queued_call", func(ctx context.Context) (int, error) {
	c := counterClass.Remote()
	slow := slowly.Remote(c, 3000)
	dropped := incr.Remote(c, 100)
	if err := ray.Cancel(dropped, false, false); err != nil {
		return 0, err
	}
	if _, err := ray.Get(ctx, dropped); !errors.Is(err, ray.ErrTaskCancelled) {
		return 0, fmt.Errorf("the cancelled call returned %v", err)
	}
	if _, err := ray.Get(ctx, slow); err != nil {
		return 0, err
	}
	return ray.Get(ctx, incr.Remote(c, 1)) // 1: the cancelled +100 never ran
})

// actor_behind makes a Counter that may restart once (its calls are not
// retried), records -1, calls slowly(ms) on it and then record(0) …
// record(n-1), which wait behind the slow call (in the actor's worker:
// calls are pipelined). The test cancels some of them, or the slow call,
// or kills the actor's worker; this returns what the actor recorded once
// every call is done (a cancelled call, or the slow call failing, is not
// an error here).
var _ = ray.Func2("actor_behind", func(ctx context.Context, ms, n int) ([]int, error) {
	c := counterClass.Options(ray.MaxRestarts(1), ray.MaxTaskRetries(0)).Remote()
	if _, err := ray.Get(ctx, record.Remote(c, -1)); err != nil {
		return nil, err
	}
	slow := slowly.Remote(c, ms)
	recs := make([]ray.ObjectRef[bool], n)
	for i := range n {
		recs[i] = record.Remote(c, i)
	}
	for i, r := range recs {
		if _, err := ray.Get(ctx, r); err != nil && !errors.Is(err, ray.ErrTaskCancelled) {
			return nil, fmt.Errorf("record(%d): %w", i, err)
		}
	}
	_, _ = ray.Get(ctx, slow)
	return ray.Get(ctx, history.Remote(c))
})

// actor_trap_behind: calls wait behind a call that makes the actor run out
// of memory; they run on the restarted actor, in order, and only they.
var _ = ray.Func1("actor_trap_behind", func(ctx context.Context, n int) ([]int, error) {
	c := counterClass.Options(ray.MaxRestarts(1), ray.MemoryLimit(64<<20)).Remote()
	if _, err := ray.Get(ctx, record.Remote(c, -1)); err != nil { // created, and a call ran
		return nil, err
	}
	oom := bloat.Remote(c)
	recs := make([]ray.ObjectRef[bool], n)
	for i := range n {
		recs[i] = record.Remote(c, i)
	}
	if _, err := ray.Get(ctx, oom); err == nil {
		return nil, errors.New("bloat succeeded")
	}
	for i, r := range recs {
		if _, err := ray.Get(ctx, r); err != nil {
			return nil, fmt.Errorf("record(%d): %w", i, err)
		}
	}
	return ray.Get(ctx, history.Remote(c))
})

// spinFor keeps the guest busy for ms (a sleep would yield to the host).
func spinFor(ms int) {
	deadline := time.Now().Add(time.Duration(ms) * time.Millisecond)
	for time.Now().Before(deadline) {
	}
}

// failOnce fails its first attempt, trapOnce runs out of memory in its
// first; their second records 1000.
var failOnce = ray.Method1(counterClass, "fail_once", func(c *Counter, ctx context.Context, ms int) (bool, error) {
	spinFor(ms)
	if ray.Attempt(ctx) == 0 {
		return false, errors.New("first attempt fails")
	}
	c.Log = append(c.Log, 1000)
	return true, nil
})

var trapOnce = ray.Method1(counterClass, "trap_once", func(c *Counter, ctx context.Context, ms int) (bool, error) {
	spinFor(ms)
	if ray.Attempt(ctx) == 0 {
		var keep [][]byte
		for {
			keep = append(keep, make([]byte, 16<<20))
		}
	}
	c.Log = append(c.Log, 1000)
	return true, nil
})

// once_behind: a call retried after a failure (or a trap) runs before the
// calls submitted behind it: the actor records -1, 1000, 0 … n-1.
var _ = ray.Func3("once_behind", func(ctx context.Context, ms, n int, trap bool) ([]int, error) {
	c := counterClass.Options(ray.MaxRestarts(1), ray.MemoryLimit(64<<20)).Remote()
	if _, err := ray.Get(ctx, record.Remote(c, -1)); err != nil {
		return nil, err
	}
	m := failOnce
	if trap {
		m = trapOnce
	}
	x := m.Options(ray.MaxRetries(1), ray.RetryExceptions()).Remote(c, ms)
	recs := make([]ray.ObjectRef[bool], n)
	for i := range n {
		recs[i] = record.Remote(c, i)
	}
	if _, err := ray.Get(ctx, x); err != nil {
		return nil, fmt.Errorf("x: %w", err)
	}
	for i, r := range recs {
		if _, err := ray.Get(ctx, r); err != nil {
			return nil, fmt.Errorf("record(%d): %w", i, err)
		}
	}
	return ray.Get(ctx, history.Remote(c))
})

// retry_race: x fails once and is retried; record(0) and record(1) come
// meanwhile. The actor records -1, 1000, 0, 1.
var _ = ray.Func2("retry_race", func(ctx context.Context, ms, wait int) ([]int, error) {
	c := counterClass.Remote()
	if _, err := ray.Get(ctx, record.Remote(c, -1)); err != nil {
		return nil, err
	}
	x := failOnce.Options(ray.MaxRetries(1), ray.RetryExceptions()).Remote(c, ms)
	spinFor(wait)
	r0, r1 := record.Remote(c, 0), record.Remote(c, 1)
	if _, err := ray.Get(ctx, x); err != nil {
		return nil, fmt.Errorf("x: %w", err)
	}
	if _, err := ray.Get(ctx, r0); err != nil {
		return nil, err
	}
	if _, err := ray.Get(ctx, r1); err != nil {
		return nil, err
	}
	return ray.Get(ctx, history.Remote(c))
})

// spawnAfter keeps the actor busy for ms, then submits add(1, 2) without
// waiting for it.
var spawnAfter = ray.Method1(counterClass, "spawn_after", func(c *Counter, ctx context.Context, ms int) (bool, error) {
	spinFor(ms)
	add.Remote(1, 2)
	return true, nil
})

// actor_spawn_behind: slowly(ms1), then spawn_after(ms2) waiting behind it,
// then record(1); returns the log once record(1) ran (so every frame of
// spawn_after's run was read by then).
var _ = ray.Func2("actor_spawn_behind", func(ctx context.Context, ms1, ms2 int) ([]int, error) {
	c := counterClass.Remote()
	if _, err := ray.Get(ctx, record.Remote(c, -1)); err != nil {
		return nil, err
	}
	slowly.Remote(c, ms1)
	spawnAfter.Remote(c, ms2)
	if _, err := ray.Get(ctx, record.Remote(c, 1)); err != nil {
		return nil, err
	}
	return ray.Get(ctx, history.Remote(c))
})

var bloat = ray.Method0(counterClass, "bloat", func(c *Counter, ctx context.Context) (int, error) {
	var keep [][]byte
	for {
		keep = append(keep, make([]byte, 16<<20))
	}
})

// ooMRestarts: a method that runs out of memory takes the actor's instance
// with it; the actor restarts (MaxRestarts 1) with fresh state.
var _ = ray.Func0("oom_restarts", func(ctx context.Context) (int, error) {
	c := counterClass.Options(ray.MaxRestarts(1), ray.MemoryLimit(64<<20)).Remote()
	if _, err := ray.Get(ctx, incr.Remote(c, 5)); err != nil {
		return 0, err
	}
	if _, err := ray.Get(ctx, bloat.Remote(c)); err == nil {
		return 0, errors.New("bloat succeeded")
	}
	return ray.Get(ctx, incr.Remote(c, 1)) // 1: restarted, constructor run again
})

// errorSurvives: a method error fails that call only.
var _ = ray.Func0("error_survives", func(ctx context.Context) (int, error) {
	c := counterClass.Remote()
	if _, err := ray.Get(ctx, failing2.Remote(c)); err == nil {
		return 0, errors.New("the failing method succeeded")
	}
	return ray.Get(ctx, incr.Remote(c, 7))
})

// actorCallRate makes n calls on a fresh actor, one at a time (sync) or all
// in flight then gathered (async), and returns calls per second.
var _ = ray.Func2("actor_call_rate", func(ctx context.Context, n int, async bool) (float64, error) {
	c := counterClass.Remote()
	if _, err := ray.Get(ctx, incr.Remote(c, 0)); err != nil { // warm: the actor exists
		return 0, err
	}
	start := time.Now()
	if async {
		refs := make([]ray.ObjectRef[int], n)
		for i := range refs {
			refs[i] = incr.Remote(c, 1)
		}
		if _, err := ray.GetAll(ctx, refs); err != nil {
			return 0, err
		}
	} else {
		for range n {
			if _, err := ray.Get(ctx, incr.Remote(c, 1)); err != nil {
				return 0, err
			}
		}
	}
	return float64(n) / time.Since(start).Seconds(), ray.Kill(c, true)
})

func init() {
	ray.Main(func(ctx context.Context) error {
		fmt.Println("driver starting")
		// Waited for but never fetched: the host reports its error at the end
		// of the run.
		ignored := failing.Remote("nobody looks at this")
		if _, _, err := ray.Wait(ctx, []ray.ObjectRef[int]{ignored}, 1, -1); err != nil {
			return err
		}
		v, err := ray.Get(ctx, add.Remote(20, 22))
		if err != nil {
			return err
		}
		fmt.Printf("driver got %d\n", v)
		return nil
	})
}

func main() {}

// Cluster tests: a large result, a large Put, and a task that checks the
// bytes of a large argument it was given by reference.

// byte_sum returns the length of b and the sum of its bytes.
var _ = ray.Func1("byte_sum", func(ctx context.Context, b []byte) ([]int64, error) {
	var sum int64
	for _, x := range b {
		sum += int64(x)
	}
	return []int64{int64(len(b)), sum}, nil
})

// put_bytes puts n bytes (as make_bytes makes them) and returns the ref.
var _ = ray.Func1("put_bytes", func(ctx context.Context, n int) (ray.ObjectRef[[]byte], error) {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return ray.Put(b), nil
})

// work sleeps ms milliseconds and returns 2*ms.
var _ = ray.Func1("work", func(ctx context.Context, ms int) (int, error) {
	if err := ray.Sleep(ctx, time.Duration(ms)*time.Millisecond); err != nil {
		return 0, err
	}
	return ms * 2, nil
})

var work = ray.Func1("work2", func(ctx context.Context, ms int) (int, error) {
	return ms, ray.Sleep(ctx, time.Duration(ms)*time.Millisecond)
})

// spread_children runs n tasks with ray.Spread from inside a task.
var _ = ray.Func1("spread_children", func(ctx context.Context, n int) (int, error) {
	refs := make([]ray.ObjectRef[int], n)
	for i := range refs {
		refs[i] = work.Options(ray.Spread()).Remote(100)
	}
	total := 0
	for _, r := range refs {
		v, err := ray.Get(ctx, r)
		if err != nil {
			return 0, err
		}
		total += v
	}
	return total, nil
})

// pinned_child runs one task on the host named node (hard affinity).
var _ = ray.Func1("pinned_child", func(ctx context.Context, node string) (int, error) {
	return ray.Get(ctx, work.Options(ray.NodeAffinity(node, false)).Remote(1))
})

// remote_counter creates a Counter on the host named node (restartable
// `restarts` times), calls it n times and returns the last count; then it
// makes a named handle available as "remote-<node>" (detached: it
// outlives this task).
var _ = ray.Func3("remote_counter", func(ctx context.Context, node string, n, restarts int) (int, error) {
	c := counterClass.Options(ray.NodeAffinity(node, true), ray.MaxRestarts(restarts), ray.MaxTaskRetries(1), ray.Name("remote-"+node),
		ray.Detached()).Remote()
	last := 0
	for range n {
		v, err := ray.Get(ctx, incr.Remote(c, 1))
		if err != nil {
			return 0, err
		}
		last = v
	}
	// A task elsewhere reaches the same actor through its handle.
	if _, err := ray.Get(ctx, bump.Remote(c)); err != nil {
		return 0, err
	}
	return last, nil
})

// release_refs gives refs back while it runs: one explicitly (ray.Release),
// n by dropping them (the garbage collector's cleanups). It returns how
// many of the dropped ones read as freed before it ended.
var _ = ray.Func1("release_refs", func(ctx context.Context, n int) (int, error) {
	r := ray.Put(42)
	ray.Release(r)
	if _, err := ray.Get(ctx, r); !errors.Is(err, ray.ErrObjectFreed) {
		return 0, fmt.Errorf("an explicitly released put reads: %v", err)
	}
	dropped := make([]string, n)
	for i := range dropped {
		dropped[i] = ray.Put(i).ID()
	}
	for range 3 {
		runtime.GC()
		runtime.Gosched()
	}
	kept := ray.Put(-1)
	if v, err := ray.Get(ctx, kept); err != nil || v != -1 { // sends the queued releases first
		return 0, fmt.Errorf("a held put reads %v, %v", v, err)
	}
	freed := 0
	for _, id := range dropped {
		var old ray.ObjectRef[int]
		if err := json.Unmarshal([]byte(`{"object_id":"`+id+`"}`), &old); err != nil {
			return 0, err
		}
		if _, err := ray.Get(ctx, old); errors.Is(err, ray.ErrObjectFreed) {
			freed++
		}
	}
	return freed, nil
})

// stash keeps refs in the actor's state; stashed reads them back.
var stash = ray.Method1(counterClass, "stash", func(c *Counter, ctx context.Context, refs []ray.ObjectRef[int]) (int, error) {
	c.Stash = append(c.Stash, refs...)
	return len(c.Stash), nil
})

var stashed = ray.Method0(counterClass, "stashed", func(c *Counter, ctx context.Context) (int, error) {
	vals, err := ray.GetAll(ctx, c.Stash)
	if err != nil {
		return 0, err
	}
	sum := 0
	for _, v := range vals {
		sum += v
	}
	return sum, nil
})

// stash_put puts v and hands the ref to the actor, which keeps it; the put's
// maker (this task) then ends.
var stashPut = ray.Func2("stash_put", func(ctx context.Context, c ray.ActorHandle[Counter], v int) (int, error) {
	return ray.Get(ctx, stash.Remote(c, []ray.ObjectRef[int]{ray.Put(v)}))
})

// actor_keeps_refs: refs an actor keeps in its state outlive the tasks
// that made them.
var _ = ray.Func0("actor_keeps_refs", func(ctx context.Context) (int, error) {
	c := counterClass.Remote()
	for _, v := range []int{3, 4} {
		if _, err := ray.Get(ctx, stashPut.Remote(c, v)); err != nil {
			return 0, err
		}
	}
	runtime.GC()
	return ray.Get(ctx, stashed.Remote(c))
})

// ints_make returns n integers (codec "ints"), some negative and large.
var _ = ray.Func1("ints_make", func(ctx context.Context, n int) ([]int, error) {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = (i - n/2) * 1_000_003
	}
	if n > 0 {
		xs[0] = -1 << 63
	}
	return xs, nil
})

// ints_sum decodes its argument as []int (from codec "ints" or JSON).
var _ = ray.Func1("ints_sum", func(ctx context.Context, xs []int) (int, error) {
	sum := 0
	for _, x := range xs[1:] {
		sum += x
	}
	return sum + len(xs), nil
})

// ints_len_any decodes its argument as an any: the ints arrive as JSON
// numbers.
var _ = ray.Func1("ints_len_any", func(ctx context.Context, v any) (int, error) {
	xs, ok := v.([]any)
	if !ok {
		return 0, fmt.Errorf("decoded as %T", v)
	}
	return len(xs), nil
})

// cborRecord travels between guests as CBOR (codec "cbor"); clients get
// its JSON.
type cborRecord struct {
	Name   string                `json:"name"`
	Words  []string              `json:"words"`
	Scores map[string]float64    `json:"scores"`
	Data   ray.ObjectRef[[]byte] `json:"data"`
}

// cbor_make returns a record of n words whose data is an object it put:
// the ref inside the value keeps it alive after this task ends.
var _ = ray.Func2("cbor_make", func(ctx context.Context, name string, n int) (cborRecord, error) {
	words := make([]string, n)
	for i := range words {
		words[i] = fmt.Sprint("w", i)
	}
	return cborRecord{Name: name, Words: words, Scores: map[string]float64{"a": 0.5, "b": -2}, Data: ray.Put([]byte(name))}, nil
})

// cbor_read reads a record (CBOR from a guest, JSON from a client) and
// the data its ref names.
var _ = ray.Func1("cbor_read", func(ctx context.Context, r cborRecord) (string, error) {
	data, err := ray.Get(ctx, r.Data)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s %d %v %s", r.Name, len(r.Words), r.Scores["a"]+r.Scores["b"], data), nil
})

// make_big returns n bytes, byte i being i*7.
var makeBig = ray.Func1("make_big", func(ctx context.Context, n int) ([]byte, error) {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b, nil
})

// get_big_sum gets n bytes made by a child task, and then the same bytes
// put by itself, and returns the length and byte sum of each: values of
// 1 MiB or more reach a guest's Get as a reply head and a body.
var getBigSum = ray.Func1("get_big_sum", func(ctx context.Context, n int) ([]int64, error) {
	sum := func(b []byte) int64 {
		var s int64
		for _, x := range b {
			s += int64(x)
		}
		return s
	}
	b, err := ray.Get(ctx, makeBig.Remote(n))
	if err != nil {
		return nil, err
	}
	own := ray.Put(append([]byte(nil), b...))
	b2, err := ray.Get(ctx, own)
	if err != nil {
		return nil, err
	}
	return []int64{int64(len(b)), sum(b), int64(len(b2)), sum(b2)}, nil
})

// pinned_big_sum runs get_big_sum on the host named node (hard affinity):
// a task on a peer, whose Gets of large values its executor serves.
var _ = ray.Func2("pinned_big_sum", func(ctx context.Context, node string, n int) ([]int64, error) {
	return ray.Get(ctx, getBigSum.Options(ray.NodeAffinity(node, false)).Remote(n))
})
