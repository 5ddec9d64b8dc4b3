//go:build !wasip1

// This file holds the remote functions, generators and actors the local
// mode tests register, and runLocal, which runs a driver in local mode.

package ray

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// Remote functions for the local-mode tests; names start with "lt." so they
// do not meet other tests' registrations.
var (
	ltAdd    = Func2("lt.add", func(ctx context.Context, a, b int) (int, error) { return a + b, nil })
	ltConcat = Func2("lt.concat", func(ctx context.Context, a string, b []byte) (string, error) { return a + string(b), nil })
	ltSum    = FuncN("lt.sum", func(ctx context.Context, xs ...float64) (float64, error) {
		var s float64
		for _, x := range xs {
			s += x
		}
		return s, nil
	})
	ltFail = Func1("lt.fail", func(ctx context.Context, msg string) (int, error) {
		return 0, WithCode("E42", errors.New(msg))
	})
	ltPanic  = Func0("lt.panic", func(ctx context.Context) (int, error) { panic("boom") })
	ltDivMod = Func1x2("lt.divmod", func(ctx context.Context, ab [2]int) (int, int, error) { return ab[0] / ab[1], ab[0] % ab[1], nil })
	ltTriple = Func0x3("lt.triple", func(ctx context.Context) (string, int, bool, error) { return "x", 7, true, nil })
	// ltTree sums 1..n by submitting a child for n-1: nested tasks.
	ltTree *Function[int]
	// ltBlock waits until it is cancelled.
	ltBlock = Func0("lt.block", func(ctx context.Context) (int, error) {
		ltBlockStarted <- struct{}{}
		err := Sleep(ctx, time.Hour)
		return 0, err
	})
	ltBlockStarted = make(chan struct{}, 16)
	ltFlakyRuns    atomic.Int32
	ltFlaky        = Func0("lt.flaky", func(ctx context.Context) (int, error) {
		ltFlakyRuns.Add(1)
		if Attempt(ctx) < 2 {
			return 0, WithCode("flaky", errors.New("not yet"))
		}
		return Attempt(ctx), nil
	})
	ltCount = Gen1("lt.count", func(ctx context.Context, n int, yield func(int) error) error {
		for i := range n {
			if err := yield(i); err != nil {
				return err
			}
		}
		if n == 3 {
			return errors.New("three is too many")
		}
		return nil
	})
	ltBP         = Gen0("lt.bp", func(ctx context.Context, yield func(int) error) error { return ltBPBody(ctx, yield) }, Backpressure(1))
	ltBPProduced atomic.Int32
	// ltForever yields until yield fails (it was cancelled).
	ltForever = Gen0("lt.forever", func(ctx context.Context, yield func(int) error) error {
		for i := 0; ; i++ {
			if err := yield(i); err != nil {
				ltForeverStopped <- err
				return err
			}
		}
	}, Backpressure(4))
	ltForeverStopped = make(chan error, 1)

	ltCounter = Actor1("lt.Counter", func(ctx context.Context, start int) (*ltCounterState, error) {
		if start < 0 {
			return nil, errors.New("negative start")
		}
		return &ltCounterState{n: start}, nil
	}, MaxRestarts(1))
	ltIncr = Method1(ltCounter, "incr", func(c *ltCounterState, ctx context.Context, by int) (int, error) {
		c.n += by
		c.log = append(c.log, c.n)
		return c.n, nil
	})
	ltLog  = Method0(ltCounter, "log", func(c *ltCounterState, ctx context.Context) ([]int, error) { return c.log, nil })
	ltHang = Method0(ltCounter, "hang", func(c *ltCounterState, ctx context.Context) (int, error) {
		ltBlockStarted <- struct{}{}
		return 0, Sleep(ctx, time.Hour)
	})
)

type ltCounterState struct {
	n   int
	log []int
}

func ltBPBody(ctx context.Context, yield func(int) error) error {
	for i := range 5 {
		ltBPProduced.Store(int32(i + 1))
		if err := yield(i); err != nil {
			return err
		}
	}
	return nil
}

func init() {
	ltTree = Func1("lt.tree", func(ctx context.Context, n int) (int, error) {
		if n <= 1 {
			return n, nil
		}
		rest, err := Get(ctx, ltTree.Remote(n-1))
		return n + rest, err
	})
}

func runLocal(t *testing.T, driver func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard only
	defer cancel()
	if err := RunLocal(ctx, driver); err != nil {
		t.Fatal(err)
	}
}
