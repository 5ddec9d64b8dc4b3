package main

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

// Item 1: a guest that exits is a worker crash.

// exitFirst exits (its worker process ends) on its first attempt and
// returns the attempt number on the others.
var _ = ray.Func1("exit_first", func(ctx context.Context, code int) (int, error) {
	if ray.Attempt(ctx) == 0 {
		os.Exit(code)
	}
	return ray.Attempt(ctx), nil
})

// exitAlways exits on every attempt.
var _ = ray.Func1("exit_always", func(ctx context.Context, code int) (int, error) {
	os.Exit(code)
	return 0, nil
})

// Item 2: a retried task never reads its previous attempt's children.

// attemptEcho returns its argument: the attempt of the parent that
// submitted it.
var attemptEcho = ray.Func1("attempt_echo", func(ctx context.Context, parentAttempt int) (int, error) {
	return parentAttempt, nil
})

// retryParent submits a child that echoes the parent's attempt number and
// waits for it. Its first attempt then fails (an application error, which
// RetryExceptions retries); a later attempt returns what its own child
// returned, which must be its own attempt number.
var _ = ray.Func0("retry_parent", func(ctx context.Context) (int, error) {
	got, err := ray.Get(ctx, attemptEcho.Remote(ray.Attempt(ctx)))
	if err != nil {
		return 0, err
	}
	if ray.Attempt(ctx) == 0 {
		return 0, errors.New("attempt 0 fails after its child ran")
	}
	return got, nil
}, ray.MaxRetries(2), ray.RetryExceptions())

// Item 3: nested tasks queue, never fail, when workers run out.

var chainH = ray.Func1("chain_h", func(ctx context.Context, i int) (int, error) { return i, nil })

var chainG = ray.Func1("chain_g", func(ctx context.Context, i int) (int, error) {
	return ray.Get(ctx, chainH.Remote(i))
})

var _ = ray.Func1("chain_f", func(ctx context.Context, i int) (int, error) {
	return ray.Get(ctx, chainG.Remote(i))
})

var fracH = ray.Func1("frac_h", func(ctx context.Context, i int) (int, error) { return i, nil }, ray.NumCPUs(0.5))

var fracG = ray.Func1("frac_g", func(ctx context.Context, i int) (int, error) {
	return ray.Get(ctx, fracH.Remote(i))
}, ray.NumCPUs(0.5))

var _ = ray.Func1("frac_f", func(ctx context.Context, i int) (int, error) {
	return ray.Get(ctx, fracG.Remote(i))
}, ray.NumCPUs(0.5))

// Item 10: when a parent fails, its children's events end.

// familyGrandchild yields once as soon as it runs, then finishes after ms
// milliseconds.
var familyGrandchild = ray.Gen1("family_grandchild", func(ctx context.Context, ms int, yield func(int) error) error {
	if err := yield(0); err != nil {
		return err
	}
	return ray.Sleep(ctx, time.Duration(ms)*time.Millisecond)
})

// familyChild starts a grandchild, waits until it runs, tells its own
// caller so (its first item), then waits for the grandchild to end.
var familyChild = ray.Gen1("family_child", func(ctx context.Context, ms int, yield func(int) error) error {
	g := familyGrandchild.Remote(ms)
	if _, err := g.Next(ctx); err != nil {
		return err
	}
	if err := yield(0); err != nil {
		return err
	}
	for _, err := range g.All(ctx) {
		if err != nil {
			return err
		}
	}
	return nil
})

// familyParent starts a child, waits until the child and its grandchild
// both run, then fails: with an error (how "error"), or by exiting its
// worker (how "exit").
var _ = ray.Func2("family_parent", func(ctx context.Context, how string, ms int) (int, error) {
	c := familyChild.Remote(ms)
	if _, err := c.Next(ctx); err != nil {
		return 0, err
	}
	if how == "exit" {
		os.Exit(1)
	}
	return 0, errors.New("the parent fails while its children run")
})
