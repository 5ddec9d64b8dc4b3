// Command longlived is issue 16's long-lived driver: it loops over a Put
// of 1 MiB, a task that takes it and returns 1 MiB, and a Get of the
// result, dropping its refs as it goes, so its live set stays small
// however long it runs. On a host with a quota it must never see the store
// full.
//
//	rayhost start --data-dir /tmp/ll --store-quota 1GiB &
//	rayhost run --env LONGLIVED_DURATION=10m ./bench/longlived
//
// LONGLIVED_DURATION (a Go duration; unset or 0: forever) or
// LONGLIVED_ITERATIONS bounds the run; LONGLIVED_KIB sets the size of the
// values (default 1024). It prints a line every 30 s and fails at the
// first error.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

// step returns a copy of v with its first byte incremented.
var step = ray.Func1("longlived_step", func(ctx context.Context, v []byte) ([]byte, error) {
	out := make([]byte, len(v))
	copy(out, v)
	out[0]++
	return out, nil
})

func init() {
	ray.Main(func(ctx context.Context) error {
		var d time.Duration
		if s := os.Getenv("LONGLIVED_DURATION"); s != "" {
			var err error
			if d, err = time.ParseDuration(s); err != nil {
				return fmt.Errorf("LONGLIVED_DURATION=%q: %w", s, err)
			}
		}
		kib, err := envInt("LONGLIVED_KIB", 1<<10)
		if err == nil && kib == 0 {
			err = fmt.Errorf("LONGLIVED_KIB=0: want a size")
		}
		if err != nil {
			return err
		}
		iterations, err := envInt("LONGLIVED_ITERATIONS", 0)
		if err != nil {
			return err
		}
		fmt.Printf("longlived: Put + task + Get of %d KiB values, for %v or %d iterations (0: forever)\n", kib, d, iterations)
		val := make([]byte, kib<<10)
		start, last := time.Now(), time.Now()
		i := 0
		for ; (d == 0 || time.Since(start) < d) && (iterations == 0 || i < iterations); i++ {
			val[0] = byte(i)
			got, err := ray.Get(ctx, step.Remote(ray.Put(val)))
			if err != nil {
				return fmt.Errorf("iteration %d, after %v: %w", i, time.Since(start).Round(time.Second), err)
			}
			if len(got) != len(val) || got[0] != byte(i)+1 {
				return fmt.Errorf("iteration %d: the task returned %d bytes starting %d", i, len(got), got[0])
			}
			if time.Since(last) >= 30*time.Second {
				last = time.Now()
				el := time.Since(start)
				fmt.Printf("longlived: %v: %d iterations, %.1f MiB/s put, %.0f iterations/s\n",
					el.Round(time.Second), i+1, float64(i+1)*float64(kib)/1024/el.Seconds(), float64(i+1)/el.Seconds())
			}
		}
		fmt.Printf("longlived: done: %d iterations in %v without an error\n", i, time.Since(start).Round(time.Second))
		return nil
	})
}

func envInt(name string, def int) (int, error) {
	s := os.Getenv(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s=%q: want a count", name, s)
	}
	return n, nil
}

func main() {}
