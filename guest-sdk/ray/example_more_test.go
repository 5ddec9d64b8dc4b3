//go:build !wasip1

package ray_test

// Examples of the shapes beyond three arguments and one result, generator
// methods, WaitAny, a generator's Completed, and NoRetryExceptions.

import (
	"context"
	"errors"
	"fmt"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

var (
	volume = ray.Func4("volume", func(ctx context.Context, name string, l, w, h float64) (string, error) {
		return fmt.Sprintf("%s: %g", name, l*w*h), nil
	})
	greet = ray.Func1("greet", func(ctx context.Context, name string) (string, error) { return "hi " + name, nil })
	// transfer and its friends are methods of the Account actor (example_test.go).
	transfer = ray.Method3(account, "transfer", func(a *Account, ctx context.Context, in, out, fee int) (int, error) {
		a.balance += in - out - fee
		return a.balance, nil
	})
	depositBeforeAfter = ray.Method1x2(account, "deposit_before_after", func(a *Account, ctx context.Context, amount int) (int, int, error) {
		before := a.balance
		a.balance += amount
		return before, a.balance, nil
	})
	statement = ray.GenMethod1(account, "statement", func(a *Account, ctx context.Context, months int, yield func(string) error) error {
		for m := 1; m <= months; m++ {
			if err := yield(fmt.Sprintf("month %d: %d", m, a.balance)); err != nil {
				return err
			}
		}
		return nil
	})
	attempts = ray.Func0("attempts", func(ctx context.Context) (int, error) {
		if ray.Attempt(ctx) == 0 {
			return 0, errors.New("the first attempt fails")
		}
		return ray.Attempt(ctx), nil
	}, ray.RetryExceptions())
)

// Func4 … Func8 register functions of 4 to 8 arguments (Func4x2, Func8x3…
// with two or three results); any argument may be an ObjectRef.
func ExampleFunc4() {
	err := ray.RunLocal(context.Background(), func(ctx context.Context) error {
		v, err := ray.Get(ctx, volume.Remote("box", 2, ray.Put(3.0), 4))
		fmt.Println(v)
		return err
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output: box: 24
}

// Actor methods take up to 8 arguments (Method3 … Method8) and return up
// to three results (Method1x2, Method0x3 …: Ray's num_returns on a method).
func ExampleMethod1x2() {
	err := ray.RunLocal(context.Background(), func(ctx context.Context) error {
		acct := account.Remote(100)
		before, after := depositBeforeAfter.Remote(acct, 50)
		b, err := ray.Get(ctx, before)
		if err != nil {
			return err
		}
		a, err := ray.Get(ctx, after)
		fmt.Println(b, a)
		if err != nil {
			return err
		}
		v, err := ray.Get(ctx, transfer.Remote(acct, 10, 40, 1))
		fmt.Println(v)
		return err
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output:
	// 100 150
	// 119
}

// A generator method streams items from an actor, with the actor's state.
func ExampleGenMethod1() {
	err := ray.RunLocal(context.Background(), func(ctx context.Context) error {
		acct := account.Remote(7)
		for ref, err := range statement.Remote(acct, 2).All(ctx) {
			if err != nil {
				return err
			}
			line, err := ray.Get(ctx, ref)
			if err != nil {
				return err
			}
			fmt.Println(line)
		}
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output:
	// month 1: 7
	// month 2: 7
}

// WaitAny waits on refs of different types (and generators) together.
func ExampleWaitAny() {
	err := ray.RunLocal(context.Background(), func(ctx context.Context) error {
		n, s := add.Remote(1, 2), greet.Remote("ray")
		ready, notReady, err := ray.WaitAny(ctx, []ray.AnyRef{n, s}, 2, -1)
		if err != nil {
			return err
		}
		fmt.Println(len(ready), len(notReady), ready[0].ID() == n.ID())
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output: 2 0 true
}

// Completed is ready once a generator has ended; Cancel takes the
// generator itself.
func ExampleObjectRefGenerator_Completed() {
	err := ray.RunLocal(context.Background(), func(ctx context.Context) error {
		stream := countdown.Remote(2)
		for _, err := range stream.All(ctx) {
			if err != nil {
				return err
			}
		}
		_, err := ray.Get(ctx, stream.Completed())
		fmt.Println("finished:", err)

		endless := countdown.Options(ray.Backpressure(1)).Remote(1 << 30)
		if _, err := endless.Next(ctx); err != nil {
			return err
		}
		ready, _, err := ray.WaitAny(ctx, []ray.AnyRef{endless.Completed()}, 1, 0)
		fmt.Println("running, completed:", len(ready) == 1, err)
		if err := ray.Cancel(endless, false, false); err != nil {
			return err
		}
		_, err = ray.Get(ctx, endless.Completed())
		fmt.Println("cancelled:", errors.Is(err, ray.ErrTaskCancelled))
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output:
	// finished: <nil>
	// running, completed: false <nil>
	// cancelled: true
}

// NoRetryExceptions turns RetryExceptions off again for some calls.
func ExampleNoRetryExceptions() {
	err := ray.RunLocal(context.Background(), func(ctx context.Context) error {
		v, err := ray.Get(ctx, attempts.Remote())
		fmt.Println(v, err)
		_, err = ray.Get(ctx, attempts.Options(ray.NoRetryExceptions()).Remote())
		fmt.Println(errors.Is(err, ray.ErrTaskFailed))
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output:
	// 1 <nil>
	// true
}
