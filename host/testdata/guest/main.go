// Command guest is the test guest of package host: small remote functions
// that exercise each path of the host (values, refs, nesting, failures).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
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

// streamsEarly reports whether the first item of a 5-item generator arrives
// while the generator is still running (its second item does not exist yet).
var _ = ray.Func0("streams_early", func(ctx context.Context) (bool, error) {
	gen := ticks.Remote(5, 200)
	if _, err := gen.Next(ctx); err != nil {
		return false, err
	}
	_, notReady, err := ray.Wait(ctx, []ray.ObjectRef[int64]{gen.NextRef()}, 1, 0)
	if err != nil {
		return false, err
	}
	for _, err := range gen.All(ctx) { // drain it
		if err != nil {
			return false, err
		}
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
// and returns, for each item k ≥ 2, how long after the consumer took item
// k-2 the item was yielded (≥ 0 when backpressure holds).
var _ = ray.Func0("backpressure_lag", func(ctx context.Context) ([]int64, error) {
	gen := ticksBounded.Remote(6, 10)
	var took []int64
	var lags []int64
	for ref, err := range gen.All(ctx) {
		if err != nil {
			return nil, err
		}
		took = append(took, time.Now().UnixNano())
		at, err := ray.Get(ctx, ref)
		if err != nil {
			return nil, err
		}
		if k := len(took) - 1; k >= 2 {
			lags = append(lags, at-took[k-2])
		}
		if err := ray.Sleep(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
	return lags, nil
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
