package main

// The API issue 15 asks for, as a guest would use it; package
// conformance's api_test.go runs it (see ../README.md).

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

// Functions with more than three arguments (Ray has no limit).

var sum4 = ray.Func4("api_sum4", func(ctx context.Context, a, b, c, d int) (int, error) {
	return a + b + c + d, nil
})

var sum5 = ray.Func5("api_sum5", func(ctx context.Context, a, b, c, d, e int) (int, error) {
	return a + b + c + d + e, nil
})

var _ = ray.Func0("api_probe_many_args", func(ctx context.Context) ([]Step, error) {
	var s steps
	v, err := ray.Get(ctx, sum4.Remote(1, 2, 3, 4))
	s.add("sum4(1, 2, 3, 4)", v, err)
	v, err = ray.Get(ctx, sum5.Remote(1, add.Remote(1, 1), 3, ray.Put(4), 5))
	s.add("sum5(1, ref 2, 3, put 4, 5)", v, err)
	return s, nil
})

// Methods with more than two arguments.

var addThree = ray.Method3(counterClass, "add_three", func(c *Counter, ctx context.Context, a, b, d int) (int, error) {
	c.N += a + b + d
	return c.N, nil
})

// Actor methods with several returns (Ray's num_returns on a method).

var beforeAfter = ray.Method1x2(counterClass, "before_after", func(c *Counter, ctx context.Context, by int) (int, int, error) {
	before := c.N
	c.N += by
	return before, c.N, nil
})

var threeViews = ray.Method0x3(counterClass, "three_views", func(c *Counter, ctx context.Context) (int, string, []int, error) {
	return c.N, fmt.Sprint(c.N), []int{c.N}, nil
})

var _ = ray.Func0("api_probe_methods", func(ctx context.Context) ([]Step, error) {
	var s steps
	h := counterClass.Remote()
	defer func() { _ = ray.Kill(h, true) }()
	v, err := ray.Get(ctx, addThree.Remote(h, 1, 2, add.Remote(1, 2)))
	s.add("add_three(1, 2, ref 3)", v, err)
	before, after := beforeAfter.Remote(h, 4)
	b, err := ray.Get(ctx, before)
	s.add("before_after(4): before", b, err)
	a, err := ray.Get(ctx, after)
	s.add("before_after(4): after", a, err)
	n, str, list := threeViews.Remote(h)
	v, err = ray.Get(ctx, n)
	s.add("three_views: int", v, err)
	sv, err := ray.Get(ctx, str)
	s.add("three_views: string", sv, err)
	lv, err := ray.Get(ctx, list)
	s.add("three_views: list", lv, err)
	return s, nil
})

// Generator methods on actors: each item is an object as soon as it is
// yielded; the actor's state is the one its other methods see.

var countUp = ray.GenMethod1(counterClass, "count_up", func(c *Counter, ctx context.Context, n int, yield func(int) error) error {
	for range n {
		c.N++
		if err := yield(c.N); err != nil {
			return err
		}
	}
	return nil
})

var _ = ray.Func0("api_probe_generator_method", func(ctx context.Context) ([]Step, error) {
	var s steps
	h := counterClass.Remote()
	defer func() { _ = ray.Kill(h, true) }()
	var items []int
	for ref, err := range countUp.Remote(h, 3).All(ctx) {
		if err != nil {
			s.add("count_up(3)", nil, err)
			return s, nil
		}
		v, err := ray.Get(ctx, ref)
		if err != nil {
			s.add("an item of count_up(3)", nil, err)
			return s, nil
		}
		items = append(items, v)
	}
	s.add("count_up(3) items", items, nil)
	v, err := ray.Get(ctx, incr.Remote(h, 0))
	s.add("the count after the generator", v, err)
	return s, nil
})

// Wait over refs of different types, through the untyped view AnyRef.

var greet = ray.Func1("api_greet", func(ctx context.Context, name string) (string, error) { return "hi " + name, nil })

// ticker yields forever, one item every ms milliseconds.
var ticker = ray.Gen1("api_ticker", func(ctx context.Context, ms int, yield func(int) error) error {
	for i := 0; ; i++ {
		if err := ray.Sleep(ctx, time.Duration(ms)*time.Millisecond); err != nil {
			return err
		}
		if err := yield(i); err != nil {
			return err
		}
	}
})

var three = ray.Gen0("api_three", func(ctx context.Context, yield func(int) error) error {
	for i := range 3 {
		if err := yield(i); err != nil {
			return err
		}
	}
	return nil
})

var _ = ray.Func0("api_probe_wait_any", func(ctx context.Context) ([]Step, error) {
	var s steps
	n, str := add.Remote(1, 2), greet.Remote("ray")
	ready, notReady, err := ray.WaitAny(ctx, []ray.AnyRef{n, str}, 2, -1)
	s.add("WaitAny([int, string], 2)", fmt.Sprintf("ready %d, not ready %d", len(ready), len(notReady)), err)
	if err == nil && len(ready) == 2 {
		s.add("ready keeps the input order", ready[0].ID() == n.ID() && ready[1].ID() == str.ID(), nil)
	}
	return s, nil
})

// Completed and cancel on a generator itself (Ray's
// ObjectRefGenerator.completed() and ray.cancel(generator)).

var _ = ray.Func0("api_probe_generator_completed", func(ctx context.Context) ([]Step, error) {
	var s steps
	fin := three.Remote()
	for _, err := range fin.All(ctx) {
		if err != nil {
			s.add("draining api_three", nil, err)
			return s, nil
		}
	}
	_, err := ray.Get(ctx, fin.Completed())
	s.add("Completed of a finished generator", "ready", err)

	endless := ticker.Remote(50)
	_, err = endless.Next(ctx)
	s.add("first item of the endless generator", "got", err)
	ready, _, err := ray.WaitAny(ctx, []ray.AnyRef{endless.Completed()}, 1, 0)
	s.add("Completed of a running generator is ready", len(ready) == 1, err)
	s.add("cancel the generator", "done", ray.Cancel(endless, false, true))
	_, err = ray.Get(ctx, endless.Completed())
	s.add("Completed after cancel", "ready", err)
	return s, nil
})

// A way to turn RetryExceptions off again.

var flaky = ray.Func0("api_flaky", func(ctx context.Context) (int, error) {
	if ray.Attempt(ctx) == 0 {
		return 0, errors.New("the first attempt fails")
	}
	return ray.Attempt(ctx), nil
}, ray.RetryExceptions())

var _ = ray.Func0("api_probe_retry_off", func(ctx context.Context) ([]Step, error) {
	var s steps
	v, err := ray.Get(ctx, flaky.Remote())
	s.add("registered with RetryExceptions()", v, err)
	v, err = ray.Get(ctx, flaky.Options(ray.NoRetryExceptions()).Remote())
	s.add("then Options(NoRetryExceptions())", v, err)
	return s, nil
})
