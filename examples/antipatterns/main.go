// Command antipatterns runs the tasks guide's six anti-patterns next to
// their fixes and prints the time each takes.
//
//	rayhost run --num-cpus 8 ./examples/antipatterns
package main

import (
	"context"
	"fmt"
	"time"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

var f = ray.Func1("f", func(ctx context.Context, i int) (int, error) {
	return i, ray.Sleep(ctx, 100*time.Millisecond)
})

var generateRollout = ray.Func0("generate_rollout", func(ctx context.Context) ([]byte, error) {
	return make([]byte, 16<<20), nil
})

var reduce = ray.Func1("reduce", func(ctx context.Context, rollout []byte) (int, error) {
	return len(rollout), nil
})

var one = ray.Func0("one", func(ctx context.Context) (int, error) {
	return 1, ray.Sleep(ctx, 100*time.Millisecond)
})

// passViaNestedRef receives refs inside a value and gets them itself: its
// worker is held while it waits.
var passViaNestedRef = ray.Func1("pass_via_nested_ref", func(ctx context.Context, refs []ray.ObjectRef[int]) (int, error) {
	vals, err := ray.GetAll(ctx, refs)
	return sum(vals), err
})

// passViaDirectArg receives the values: the host resolves them first.
var passViaDirectArg = ray.FuncN("pass_via_direct_arg", func(ctx context.Context, args ...int) (int, error) {
	return sum(args), nil
})

// slowFirst takes longer for smaller i, so submission order is the worst
// order to process results in.
var slowFirst = ray.Func1("slow_first", func(ctx context.Context, i int) (int, error) {
	return i, ray.Sleep(ctx, time.Duration(10-i)*40*time.Millisecond)
})

var returnBigObject = ray.Func0("return_big_object", func(ctx context.Context) ([]byte, error) {
	return make([]byte, 100<<10), nil
})

var remoteDouble = ray.Func1("remote_double", func(ctx context.Context, n int) (int, error) {
	return n * 2, nil
})

var remoteDoubleBatch = ray.Func1("remote_double_batch", func(ctx context.Context, numbers []int) ([]int, error) {
	out := make([]int, len(numbers))
	for i, n := range numbers {
		out[i] = n * 2
	}
	return out, nil
})

func sum(xs []int) int {
	s := 0
	for _, x := range xs {
		s += x
	}
	return s
}

// process stands for the work a driver does with each result.
func process(ctx context.Context) error { return ray.Sleep(ctx, 40*time.Millisecond) }

func timed(fn func() error) (float64, error) {
	start := time.Now()
	err := fn()
	return time.Since(start).Seconds(), err
}

func report(name string, anti, fix float64) {
	fmt.Printf("%-40s anti-pattern %6.3f s   fix %6.3f s\n", name+":", anti, fix)
}

func init() { ray.Main(run) }

func run(ctx context.Context) error {
	type pair struct {
		name      string
		anti, fix func() error
	}
	pairs := []pair{
		{"get in a loop vs batch get", func() error {
			for i := range 10 {
				if _, err := ray.Get(ctx, f.Remote(i)); err != nil {
					return err
				}
			}
			return nil
		}, func() error {
			refs := make([]ray.ObjectRef[int], 10)
			for i := range refs {
				refs[i] = f.Remote(i)
			}
			_, err := ray.GetAll(ctx, refs)
			return err
		}},
		{"unnecessary get vs passing the ref", func() error {
			rollout, err := ray.Get(ctx, generateRollout.Remote())
			if err != nil {
				return err
			}
			_, err = ray.Get(ctx, reduce.Remote(rollout))
			return err
		}, func() error {
			_, err := ray.Get(ctx, reduce.Remote(generateRollout.Remote()))
			return err
		}},
		{"get on task arguments vs direct args", func() error {
			refs := []ray.ObjectRef[int]{one.Remote(), one.Remote(), one.Remote()}
			_, err := ray.Get(ctx, passViaNestedRef.Remote(refs))
			return err
		}, func() error {
			_, err := ray.Get(ctx, passViaDirectArg.Remote(one.Remote(), one.Remote(), one.Remote()))
			return err
		}},
		{"submission order vs completion order", func() error {
			refs := make([]ray.ObjectRef[int], 10)
			for i := range refs {
				refs[i] = slowFirst.Remote(i)
			}
			for _, ref := range refs {
				if _, err := ray.Get(ctx, ref); err != nil {
					return err
				}
				if err := process(ctx); err != nil {
					return err
				}
			}
			return nil
		}, func() error {
			unfinished := make([]ray.ObjectRef[int], 10)
			for i := range unfinished {
				unfinished[i] = slowFirst.Remote(i)
			}
			for len(unfinished) > 0 {
				finished, rest, err := ray.Wait(ctx, unfinished, 1, -1)
				if err != nil {
					return err
				}
				unfinished = rest
				if _, err := ray.Get(ctx, finished[0]); err != nil {
					return err
				}
				if err := process(ctx); err != nil {
					return err
				}
			}
			return nil
		}},
		{"fetching 500 objects at once vs by 100", func() error {
			refs := make([]ray.ObjectRef[[]byte], 500)
			for i := range refs {
				refs[i] = returnBigObject.Remote()
			}
			_, err := ray.GetAll(ctx, refs) // 50 MiB in memory at once
			return err
		}, func() error {
			refs := make([]ray.ObjectRef[[]byte], 500)
			for i := range refs {
				refs[i] = returnBigObject.Remote()
			}
			for len(refs) > 0 {
				ready, rest, err := ray.Wait(ctx, refs, min(100, len(refs)), -1)
				if err != nil {
					return err
				}
				refs = rest
				if _, err := ray.GetAll(ctx, ready); err != nil { // 10 MiB at a time
					return err
				}
			}
			return nil
		}},
		{"10,000 tiny tasks vs 10 batches", func() error {
			refs := make([]ray.ObjectRef[int], 10_000)
			for i := range refs {
				refs[i] = remoteDouble.Remote(i)
			}
			_, err := ray.GetAll(ctx, refs)
			return err
		}, func() error {
			var refs []ray.ObjectRef[[]int]
			for start := 0; start < 10_000; start += 1000 {
				batch := make([]int, 1000)
				for i := range batch {
					batch[i] = start + i
				}
				refs = append(refs, remoteDoubleBatch.Remote(batch))
			}
			_, err := ray.GetAll(ctx, refs)
			return err
		}},
	}
	for _, p := range pairs {
		anti, err := timed(p.anti)
		if err != nil {
			return fmt.Errorf("%s (anti-pattern): %w", p.name, err)
		}
		fix, err := timed(p.fix)
		if err != nil {
			return fmt.Errorf("%s (fix): %w", p.name, err)
		}
		report(p.name, anti, fix)
	}
	return nil
}

func main() {}
