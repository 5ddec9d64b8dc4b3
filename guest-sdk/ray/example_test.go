//go:build !wasip1

package ray_test

// These examples run in local mode (ray.RunLocal), so `go test` runs them
// and checks their output. In a guest built for rayhost, the body of each
// driver is what you would register with ray.Main and start with
// `rayhost run`.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

// Remote functions are registered at package level, so that every instance
// of the module knows them.
var (
	square = ray.Func1("square", func(ctx context.Context, x int) (int, error) {
		return x * x, nil
	})
	add = ray.Func2("add", func(ctx context.Context, a, b int) (int, error) {
		return a + b, nil
	})
	join = ray.FuncN("join", func(ctx context.Context, words ...string) (string, error) {
		return strings.Join(words, " "), nil
	})
	divmod = ray.Func1x2("divmod", func(ctx context.Context, ab [2]int) (int, int, error) {
		return ab[0] / ab[1], ab[0] % ab[1], nil
	})
	// slow runs until it is cancelled (ray.Sleep returns early then).
	slow = ray.Func1("slow", func(ctx context.Context, d time.Duration) (string, error) {
		return "slow", ray.Sleep(ctx, d)
	})
	fast = ray.Func0("fast", func(ctx context.Context) (string, error) {
		return "fast", nil
	})
	// fib submits tasks from inside a task (nested tasks); it is assigned in
	// init because it refers to itself.
	fib *ray.Function[int]
)

func init() {
	fib = ray.Func1("fib", func(ctx context.Context, n int) (int, error) {
		if n < 2 {
			return n, nil
		}
		a, b := fib.Remote(n-1), fib.Remote(n-2)
		x, err := ray.Get(ctx, a)
		if err != nil {
			return 0, err
		}
		y, err := ray.Get(ctx, b)
		return x + y, err
	})
}

// The program of the package documentation. Remote returns at once with an
// ObjectRef (a future); GetAll waits for the values.
func Example() {
	err := ray.RunLocal(context.Background(), func(ctx context.Context) error {
		refs := make([]ray.ObjectRef[int], 4)
		for i := range refs {
			refs[i] = square.Remote(i)
		}
		squares, err := ray.GetAll(ctx, refs)
		fmt.Println(squares)
		return err
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output: [0 1 4 9]
}

// An argument of Remote is a value of the parameter's type or an ObjectRef
// of that type. For a ref, the task starts once the value exists and gets
// the value, so results flow from task to task without passing through the
// driver.
func ExampleFunc2() {
	err := ray.RunLocal(context.Background(), func(ctx context.Context) error {
		three := add.Remote(1, 2)      // values
		total := add.Remote(three, 10) // an ObjectRef and a value
		twice := add.Remote(total, total)
		v, err := ray.Get(ctx, twice)
		fmt.Println(v)
		return err
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output: 26
}

// FuncN takes any number of arguments of one type, like Python's *args.
func ExampleFuncN() {
	err := ray.RunLocal(context.Background(), func(ctx context.Context) error {
		s, err := ray.Get(ctx, join.Remote("tasks", "in", ray.Put("Go")))
		fmt.Println(s)
		return err
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output: tasks in Go
}

// A function with several results (Ray's num_returns) gives one ObjectRef
// per result; each is an object of its own.
func ExampleFunc1x2() {
	err := ray.RunLocal(context.Background(), func(ctx context.Context) error {
		q, r := divmod.Remote([2]int{17, 5})
		quotient, err := ray.Get(ctx, q)
		if err != nil {
			return err
		}
		rest, err := ray.Get(ctx, r)
		fmt.Println(quotient, rest)
		return err
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output: 3 2
}

// Tasks may submit tasks and wait for them: a task blocked in Get gives its
// CPU back to the host, so nesting cannot deadlock.
func ExampleGet_nested() {
	err := ray.RunLocal(context.Background(), func(ctx context.Context) error {
		v, err := ray.Get(ctx, fib.Remote(10))
		fmt.Println(v)
		return err
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output: 55
}

// Get waits for one value; ctx's deadline bounds the wait.
func ExampleGet() {
	err := ray.RunLocal(context.Background(), func(ctx context.Context) error {
		v, err := ray.Get(ctx, square.Remote(12))
		if err != nil {
			return err
		}
		fmt.Println(v)

		short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		defer cancel()
		_, err = ray.Get(short, slow.Remote(time.Hour))
		fmt.Println(errors.Is(err, ray.ErrGetTimeout))
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output:
	// 144
	// true
}

// Put stores a value once; pass its ObjectRef to many tasks instead of
// copying the value into each call.
func ExamplePut() {
	err := ray.RunLocal(context.Background(), func(ctx context.Context) error {
		base := ray.Put(100)
		refs := []ray.ObjectRef[int]{add.Remote(base, 1), add.Remote(base, 2), add.Remote(base, 3)}
		sums, err := ray.GetAll(ctx, refs)
		fmt.Println(sums)
		return err
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output: [101 102 103]
}

// Wait returns as soon as numReturns of the refs are ready, and splits them
// into ready and not ready, each in the order given.
func ExampleWait() {
	err := ray.RunLocal(context.Background(), func(ctx context.Context) error {
		refs := []ray.ObjectRef[string]{slow.Remote(time.Hour), fast.Remote()}
		ready, notReady, err := ray.Wait(ctx, refs, 1, -1)
		if err != nil {
			return err
		}
		first, err := ray.Get(ctx, ready[0])
		fmt.Println(first, len(notReady))
		return err // slow is still running: RunLocal cancels it
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output: fast 1
}

// lookup's options, given at registration, are the defaults of its calls:
// each needs half a CPU and 1 unit of the custom resource "db".
var lookup = ray.Func1("lookup", func(ctx context.Context, key string) (string, error) {
	return "value of " + key, nil
}, ray.NumCPUs(0.5), ray.Resources(map[string]float64{"db": 1}))

// Options set how calls run: given at registration they are the function's
// defaults; Options on a function returns a copy whose calls use more.
// Resources (NumCPUs, NumGPUs, Resources) decide where and when a call can
// run on a cluster; local mode checks them but runs every call at once.
func ExampleFunction_Options() {
	err := ray.RunLocal(context.Background(), func(ctx context.Context) error {
		// Per call: no retries, and at most a minute per attempt.
		ref := lookup.Options(ray.MaxRetries(0), ray.Timeout(time.Minute)).Remote("k")
		v, err := ray.Get(ctx, ref)
		fmt.Println(v)
		return err
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output: value of k
}

// busy fails twice with the code "busy", then succeeds.
var busy = ray.Func0("busy", func(ctx context.Context) (int, error) {
	if ray.Attempt(ctx) < 2 {
		return 0, ray.WithCode("busy", errors.New("server busy"))
	}
	return ray.Attempt(ctx), nil
})

// A task's error reaches Get as a *ray.TaskError. Application errors are
// retried only with RetryExceptions (within MaxRetries, 3 by default).
func ExampleRetryExceptions() {
	err := ray.RunLocal(context.Background(), func(ctx context.Context) error {
		_, err := ray.Get(ctx, busy.Remote())
		fmt.Println(err)

		// ray.Attempt counts from 0, as Ray's attempt number does.
		retries, err := ray.Get(ctx, busy.Options(ray.RetryExceptions("busy")).Remote())
		fmt.Println("succeeded after", retries, "retries")
		return err
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output:
	// task busy on local (attempt 1) failed: application: server busy
	// succeeded after 2 retries
}

var checkAge = ray.Func1("check_age", func(ctx context.Context, age int) (int, error) {
	if age < 0 {
		return 0, ray.WithCode("negative", fmt.Errorf("age %d is negative", age))
	}
	return age, nil
})

// A failed task's objects hold its error. Get returns it as a *TaskError
// (errors.Is(err, ray.ErrTaskFailed)); a task whose ObjectRef argument
// failed fails too, with Kind "dependency" and the cause.
func ExampleTaskError() {
	err := ray.RunLocal(context.Background(), func(ctx context.Context) error {
		bad := checkAge.Remote(-1)
		_, err := ray.Get(ctx, bad)
		var te *ray.TaskError
		if errors.As(err, &te) {
			fmt.Println(te.Kind, te.Code, te.Message)
		}

		_, err = ray.Get(ctx, add.Remote(bad, 1))
		if errors.As(err, &te) {
			fmt.Println(te.Kind, "because", te.Cause.Message)
		}
		fmt.Println(errors.Is(err, ray.ErrTaskFailed))
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output:
	// application negative age -1 is negative
	// dependency because age -1 is negative
	// true
}

// Cancel stops a task: queued, it never runs; running, its Get, Wait and
// Sleep calls return ErrTaskCancelled. Get on its ref then reports the
// cancellation.
func ExampleCancel() {
	err := ray.RunLocal(context.Background(), func(ctx context.Context) error {
		ref := slow.Remote(time.Hour)
		if err := ray.Cancel(ref, false, false); err != nil {
			return err
		}
		_, err := ray.Get(ctx, ref)
		fmt.Println(errors.Is(err, ray.ErrTaskCancelled))
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output: true
}

// countdown yields n, n-1, …, 1: each item is an object the caller can use
// before the generator ends.
var countdown = ray.Gen1("countdown", func(ctx context.Context, n int, yield func(int) error) error {
	for i := n; i > 0; i-- {
		if err := yield(i); err != nil {
			return err // the generator was cancelled
		}
	}
	return nil
})

// A generator streams its results (Ray's streaming generators): All ranges
// over the items' ObjectRefs as they are produced.
func ExampleGen1() {
	err := ray.RunLocal(context.Background(), func(ctx context.Context) error {
		stream := countdown.Options(ray.Backpressure(2)).Remote(3)
		for ref, err := range stream.All(ctx) {
			if err != nil {
				return err
			}
			v, err := ray.Get(ctx, ref)
			if err != nil {
				return err
			}
			fmt.Println(v)
		}
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output:
	// 3
	// 2
	// 1
}

// Account is the state of an actor.
type Account struct{ balance int }

var (
	account = ray.Actor1("Account", func(ctx context.Context, opening int) (*Account, error) {
		return &Account{balance: opening}, nil
	})
	deposit = ray.Method1(account, "deposit", func(a *Account, ctx context.Context, amount int) (int, error) {
		a.balance += amount
		return a.balance, nil
	})
	balance = ray.Method0(account, "balance", func(a *Account, ctx context.Context) (int, error) {
		return a.balance, nil
	})
)

// An actor is state that lives on one worker; its methods run there one at
// a time, in the order they were submitted. A handle is a value: pass it to
// tasks, or find a named actor with GetActor.
func ExampleActor1() {
	err := ray.RunLocal(context.Background(), func(ctx context.Context) error {
		acct := account.Options(ray.Name("savings")).Remote(100)
		for _, amount := range []int{10, 20, 30} {
			deposit.Remote(acct, amount) // queued in order
		}
		same, err := ray.GetActor[Account](ctx, "savings", "")
		if err != nil {
			return err
		}
		v, err := ray.Get(ctx, balance.Remote(same))
		fmt.Println(v)
		return err
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output: 160
}

// Kill ends an actor: its calls fail with ErrActorDied. With restarts left
// (MaxRestarts) and noRestart false, it starts again with fresh state.
func ExampleKill() {
	err := ray.RunLocal(context.Background(), func(ctx context.Context) error {
		acct := account.Options(ray.MaxRestarts(1)).Remote(5)
		if _, err := ray.Get(ctx, deposit.Remote(acct, 10)); err != nil {
			return err
		}
		if err := ray.Kill(acct, false); err != nil { // restarts: the constructor runs again
			return err
		}
		v, err := ray.Get(ctx, balance.Remote(acct))
		fmt.Println(v, err)
		if err := ray.Kill(acct, true); err != nil { // for good
			return err
		}
		_, err = ray.Get(ctx, balance.Remote(acct))
		fmt.Println(errors.Is(err, ray.ErrActorDied))
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output:
	// 5 <nil>
	// true
}

// RunLocal runs a driver in this process, for unit tests of remote
// functions: the same code runs as a guest under `rayhost run`.
func ExampleRunLocal() {
	// In a _test.go file: func TestSquare(t *testing.T) { … }
	err := ray.RunLocal(context.Background(), func(ctx context.Context) error {
		got, err := ray.Get(ctx, square.Remote(7))
		if err != nil {
			return err
		}
		if got != 49 {
			return fmt.Errorf("square(7) = %d, want 49", got)
		}
		return nil
	})
	fmt.Println("err:", err)
	// Output: err: <nil>
}
