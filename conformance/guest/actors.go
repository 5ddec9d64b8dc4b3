package main

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

// Counter is the probes' actor: a count, and ways to fail.
type Counter struct {
	N     int
	Calls int
}

var counterClass = ray.Actor0("Counter", func(ctx context.Context) (*Counter, error) { return &Counter{}, nil })

var incr = ray.Method1(counterClass, "incr", func(c *Counter, ctx context.Context, by int) (int, error) {
	c.N += by
	return c.N, nil
})

// exitMethod ends the actor's worker process, as a crash would.
var exitMethod = ray.Method0(counterClass, "exit", func(c *Counter, ctx context.Context) (int, error) {
	os.Exit(0)
	return 0, nil
})

// failFirst fails the first time it is called on an actor, then returns
// how often it was called.
var failFirst = ray.Method0(counterClass, "fail_first", func(c *Counter, ctx context.Context) (int, error) {
	c.Calls++
	if c.Calls == 1 {
		return 0, errors.New("the first call fails")
	}
	return c.Calls, nil
})

// failAlways fails every time and counts its calls.
var failAlways = ray.Method0(counterClass, "fail_always", func(c *Counter, ctx context.Context) (int, error) {
	c.Calls++
	return 0, errors.New("every call fails")
})

var calls = ray.Method0(counterClass, "calls", func(c *Counter, ctx context.Context) (int, error) { return c.Calls, nil })

// bloat takes memory until the instance runs out of it: the actor's
// worker dies (as a crash would, today; see item 1 for os.Exit).
var bloat = ray.Method0(counterClass, "bloat", func(c *Counter, ctx context.Context) (int, error) {
	var keep [][]byte
	for {
		keep = append(keep, make([]byte, 16<<20))
	}
})

// getChild blocks the actor in Get on a task it submitted.
var getChild = ray.Method1(counterClass, "get_child", func(c *Counter, ctx context.Context, i int) (int, error) {
	return ray.Get(ctx, add.Remote(i, 1))
})

// brokenClass is an actor whose constructor fails.
var brokenClass = ray.Actor0("Broken", func(ctx context.Context) (*Counter, error) {
	return nil, errors.New("the constructor fails")
})

var brokenIncr = ray.Method1(brokenClass, "incr", func(c *Counter, ctx context.Context, by int) (int, error) {
	c.N += by
	return c.N, nil
})

// getAfterRestart calls incr(1) on h, once more while the call finds the
// actor dead but restarting: a call submitted while the actor restarts may
// fail (Ray's at-most-once default), a later one must reach the new
// instance. It gives up after a minute.
func getAfterRestart(ctx context.Context, h ray.ActorHandle[Counter]) (int, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		c, cancel := bounded(ctx)
		v, err := ray.Get(c, incr.Remote(h, 1))
		cancel()
		if !errors.Is(err, ray.ErrActorDied) || time.Now().After(deadline) {
			return v, err
		}
		if err := ray.Sleep(ctx, 100*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// Item 1: an actor method that exits is an actor death; the actor restarts
// within MaxRestarts, with fresh state, and is dead after.
var _ = ray.Func0("probe_actor_exit", func(ctx context.Context) ([]Step, error) {
	var s steps
	h := counterClass.Options(ray.MaxRestarts(1)).Remote()
	v, err := ray.Get(ctx, incr.Remote(h, 1))
	s.add("incr before the crash", v, err)
	c, cancel := bounded(ctx)
	v, err = ray.Get(c, exitMethod.Remote(h))
	cancel()
	s.add("the call that exits", v, err)
	v, err = getAfterRestart(ctx, h)
	s.add("incr after the restart", v, err)
	c, cancel = bounded(ctx)
	v, err = ray.Get(c, exitMethod.Remote(h))
	cancel()
	s.add("the call that exits again", v, err)
	c, cancel = bounded(ctx)
	v, err = ray.Get(c, incr.Remote(h, 1))
	cancel()
	s.add("incr with no restart left", v, err)
	_ = ray.Kill(h, true)
	return s, nil
})

// Item 4: an actor method blocked in Get gives its CPU back. n calls on
// one actor, each blocked in Get on a child task: one after the other, or
// all submitted at once (inFlight). The actor stays alive: an idle actor
// holds no CPU.
var _ = ray.Func2("probe_actor_blocked_get", func(ctx context.Context, n int, inFlight bool) (int, error) {
	h := counterClass.Remote()
	refs := make([]ray.ObjectRef[int], n)
	for i := range refs {
		refs[i] = getChild.Remote(h, i)
		if !inFlight {
			if _, err := ray.Get(ctx, refs[i]); err != nil {
				return 0, err
			}
		}
	}
	vals, err := ray.GetAll(ctx, refs)
	sum := 0
	for _, v := range vals {
		sum += v
	}
	return sum, err
})

// Item 5: an actor method's MaxRetries and RetryExceptions retry the call.
var _ = ray.Func0("probe_actor_method_retry", func(ctx context.Context) ([]Step, error) {
	var s steps
	plain := counterClass.Remote()
	v, err := ray.Get(ctx, failFirst.Remote(plain))
	s.add("fail_first without retry options", v, err)

	retried := counterClass.Remote()
	v, err = ray.Get(ctx, failFirst.Options(ray.MaxRetries(1), ray.RetryExceptions()).Remote(retried))
	s.add("fail_first with MaxRetries(1), RetryExceptions()", v, err)

	limited := counterClass.Remote()
	v, err = ray.Get(ctx, failAlways.Options(ray.MaxRetries(2), ray.RetryExceptions()).Remote(limited))
	s.add("fail_always with MaxRetries(2), RetryExceptions()", v, err)
	v, err = ray.Get(ctx, calls.Remote(limited))
	s.add("calls of fail_always", v, err)
	for _, h := range []ray.ActorHandle[Counter]{plain, retried, limited} {
		_ = ray.Kill(h, true)
	}
	return s, nil
})

// Item 6: calls on an actor whose creation failed, was infeasible and then
// killed, or that used up its restarts fail with ErrActorDied.
var _ = ray.Func0("probe_actor_death", func(ctx context.Context) ([]Step, error) {
	var s steps
	c, cancel := bounded(ctx)
	v, err := ray.Get(c, brokenIncr.Remote(brokenClass.Remote(), 1))
	cancel()
	s.add("call on an actor whose constructor failed", v, err)

	big := counterClass.Options(ray.NumCPUs(64)).Remote()
	pending := incr.Remote(big, 1)
	// Ray keeps it pending: after a while, its creation has not ended and
	// the call is not ready (a failure would make them ready).
	c, cancel = context.WithTimeout(ctx, 2*time.Second)
	err = big.Ready(c)
	cancel()
	s.add("the infeasible actor's creation after 2 s", "done", err)
	ready, _, err := ray.Wait(ctx, []ray.ObjectRef[int]{pending}, 1, 0)
	s.add("ready calls on the infeasible actor", len(ready), err)
	s.add("kill the infeasible actor", "done", ray.Kill(big, true))
	c, cancel = bounded(ctx)
	v, err = ray.Get(c, pending)
	cancel()
	s.add("the call on the killed infeasible actor", v, err)

	h := counterClass.Options(ray.MaxRestarts(1)).Remote()
	v, err = ray.Get(ctx, incr.Remote(h, 1))
	s.add("incr on a fresh actor", v, err)
	s.add("kill, restart allowed", "done", ray.Kill(h, false))
	v, err = getAfterRestart(ctx, h)
	s.add("incr after the restart", v, err)
	s.add("kill again, restart allowed", "done", ray.Kill(h, false))
	c, cancel = bounded(ctx)
	v, err = ray.Get(c, incr.Remote(h, 1))
	cancel()
	s.add("incr with no restart left", v, err)

	// The same with restarts spent by the worker dying.
	h = counterClass.Options(ray.MaxRestarts(1), ray.MemoryLimit(64<<20)).Remote()
	v, err = ray.Get(ctx, incr.Remote(h, 1))
	s.add("incr on a fresh actor that will run out of memory", v, err)
	c, cancel = bounded(ctx)
	v, err = ray.Get(c, bloat.Remote(h))
	cancel()
	s.add("the call that runs out of memory", v, err)
	v, err = getAfterRestart(ctx, h)
	s.add("incr after the restart", v, err)
	c, cancel = bounded(ctx)
	v, err = ray.Get(c, bloat.Remote(h))
	cancel()
	s.add("the call that runs out of memory again", v, err)
	c, cancel = bounded(ctx)
	v, err = ray.Get(c, incr.Remote(h, 1))
	cancel()
	s.add("incr with no restart left", v, err)
	return s, nil
})
