// Command guest holds the remote functions and in-cluster drivers of
// `rayhost microbenchmark`: each metric of Ray's microbenchmark, measured
// by a driver task inside the cluster, as ray_perf.py measures from its
// driver.
package main

import (
	"context"
	"fmt"
	"time"

	"github.com/rayhost/rayhost/examples/pi/sample"
	"github.com/rayhost/rayhost/guest-sdk/ray"
)

// small is the trivial task of every task metric: it returns a value.
var small = ray.Func0("small", func(ctx context.Context) ([]byte, error) { return []byte("ok"), nil })

type counter struct{ n int }

var counterClass = ray.Actor0("Counter", func(ctx context.Context) (*counter, error) { return &counter{}, nil })

var inc = ray.Method0(counterClass, "inc", func(c *counter, ctx context.Context) (int, error) {
	c.n++
	return c.n, nil
})

// Result is what a metric run returns: operations done in the time.
type Result struct {
	Ops     float64 `json:"ops"`
	Seconds float64 `json:"seconds"`
}

// loop runs op until d has passed and counts its operations.
func loop(d time.Duration, opsPerCall float64, op func() error) (Result, error) {
	start := time.Now()
	n := 0.0
	for time.Since(start) < d {
		if err := op(); err != nil {
			return Result{}, err
		}
		n += opsPerCall
	}
	return Result{Ops: n, Seconds: time.Since(start).Seconds()}, nil
}

func tasksAsync(ctx context.Context, n int) error {
	refs := make([]ray.ObjectRef[[]byte], n)
	for i := range refs {
		refs[i] = small.Remote()
	}
	_, err := ray.GetAll(ctx, refs)
	return err
}

// metric runs one metric for ms milliseconds.
var _ = ray.Func2("metric", metric, ray.NumCPUs(0)) // a driver: it holds no CPU

func metric(ctx context.Context, name string, ms int) (Result, error) {
	d := time.Duration(ms) * time.Millisecond
	switch name {
	case "single_client_tasks_sync":
		return loop(d, 1, func() error { _, err := ray.Get(ctx, small.Remote()); return err })
	case "single_client_tasks_async":
		return loop(d, 1000, func() error { return tasksAsync(ctx, 1000) })
	case "single_client_tasks_and_get_batch":
		return loop(d, 1, func() error { return tasksAsync(ctx, 1000) })
	case "single_client_get_calls":
		ref := ray.Put(0)
		return loop(d, 1, func() error { _, err := ray.Get(ctx, ref); return err })
	case "single_client_put_calls":
		// A guest's Put is pipelined: it returns before the object lands. The
		// host takes one worker's puts in order, so once the last of 1,000 is
		// ready (Wait: nothing is fetched), all 1,000 are in the store.
		return loop(d, 1000, func() error {
			var last ray.ObjectRef[int]
			for range 1000 {
				last = ray.Put(0)
			}
			_, _, err := ray.Wait(ctx, []ray.ObjectRef[int]{last}, 1, -1)
			return err
		})
	case "single_client_put_gigabytes":
		arr := make([]byte, 100<<20) // Ray puts 800 MB; 100 MiB keeps the guest within its memory
		gb := float64(len(arr)) / 1e9
		return loop(d, gb, func() error {
			// Done when the object is ready (the host has it; it reaches the
			// store behind, if it lives long enough). Nothing is fetched back.
			// The ref is dropped at once, as Ray's `ray.put(arr)` drops it
			// (Python frees it by reference count; Go's collector would
			// only find it at the guest's next GC).
			ref := ray.Put(arr)
			_, _, err := ray.Wait(ctx, []ray.ObjectRef[[]byte]{ref}, 1, -1)
			ray.Release(ref)
			return err
		})
	case "single_client_get_gigabytes":
		// Not a metric of Ray's: the "and get the same". One 100 MiB
		// object put once, then read whole into the guest again and again.
		arr := make([]byte, 100<<20)
		ref := ray.Put(arr)
		defer ray.Release(ref)
		arr = nil
		gb := float64(100<<20) / 1e9
		return loop(d, gb, func() error {
			got, err := ray.Get(ctx, ref)
			if err == nil && len(got) != 100<<20 {
				err = fmt.Errorf("got %d bytes, want %d", len(got), 100<<20)
			}
			return err
		})
	case "single_client_wait_1k_refs":
		return loop(d, 1, func() error {
			refs := make([]ray.ObjectRef[[]byte], 1000)
			for i := range refs {
				refs[i] = small.Remote()
			}
			for len(refs) > 0 {
				_, rest, err := ray.Wait(ctx, refs, 1, -1)
				if err != nil {
					return err
				}
				refs = rest
			}
			return nil
		})
	case "1_1_actor_calls_sync":
		a := counterClass.Remote()
		if err := a.Ready(ctx); err != nil {
			return Result{}, err
		}
		defer ray.Kill(a, true)
		return loop(d, 1, func() error { _, err := ray.Get(ctx, inc.Remote(a)); return err })
	case "1_1_actor_calls_async":
		a := counterClass.Remote()
		if err := a.Ready(ctx); err != nil {
			return Result{}, err
		}
		defer ray.Kill(a, true)
		return loop(d, 1000, func() error {
			refs := make([]ray.ObjectRef[int], 1000)
			for i := range refs {
				refs[i] = inc.Remote(a)
			}
			_, err := ray.GetAll(ctx, refs)
			return err
		})
	}
	return Result{}, fmt.Errorf("unknown metric %q", name)
}

// multiClient runs n drivers (tasks) submitting in parallel, as Ray's
// multi_client_tasks_async runs 4 submitting clients.
var clientTasks = ray.Func1("client_tasks", func(ctx context.Context, ms int) (Result, error) {
	return loop(time.Duration(ms)*time.Millisecond, 1000, func() error { return tasksAsync(ctx, 1000) })
}, ray.NumCPUs(0))

var _ = ray.Func2("multi_client", func(ctx context.Context, clients, ms int) (Result, error) {
	refs := make([]ray.ObjectRef[Result], clients)
	for i := range refs {
		refs[i] = clientTasks.Remote(ms)
	}
	rs, err := ray.GetAll(ctx, refs)
	if err != nil {
		return Result{}, err
	}
	var total Result
	for _, r := range rs {
		total.Ops += r.Ops
		total.Seconds = max(total.Seconds, r.Seconds)
	}
	return total, nil
})

// piInside times examples/pi's sampling kernel in the guest, n samples
// from seed: Ops are samples (`rayhost microbenchmark` compares it with
// the same code run natively).
var _ = ray.Func2("pi_inside", func(ctx context.Context, seed, n int) (Result, error) {
	start := time.Now()
	inside := sample.New(uint64(seed)).Inside(n)
	took := time.Since(start).Seconds()
	if inside <= 0 || inside > n {
		return Result{}, fmt.Errorf("%d of %d samples inside", inside, n)
	}
	return Result{Ops: float64(n), Seconds: took}, nil
})

// makeBytes returns n bytes: the object pulled between hosts.
var _ = ray.Func1("make_bytes", func(ctx context.Context, n int) ([]byte, error) {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b, nil
})

// putLarge makes n bytes in guest memory, puts them and waits until the
// object is ready: `rayhost microbenchmark` reads the peak memory of the
// worker and the host meanwhile (the copies of a large put).
var _ = ray.Func1("put_large", func(ctx context.Context, n int) (int, error) {
	b := make([]byte, n)
	for i := 0; i < n; i += 4096 {
		b[i] = byte(i >> 12)
	}
	ref := ray.Put(b)
	if _, _, err := ray.Wait(ctx, []ray.ObjectRef[[]byte]{ref}, 1, -1); err != nil {
		return 0, err
	}
	return n, nil
})

func main() {}
