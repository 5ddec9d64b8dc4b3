// Command wait is the tasks guide's "Waiting for Partial Results": Wait
// returns as soon as num_returns of the refs are ready.
//
//	rayhost run ./examples/wait
package main

import (
	"context"
	"fmt"
	"time"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

var slowFunction = ray.Func1("slow_function", func(ctx context.Context, seconds float64) (float64, error) {
	return seconds, ray.Sleep(ctx, time.Duration(seconds*float64(time.Second)))
})

func init() { ray.Main(run) }

func run(ctx context.Context) error {
	start := time.Now()
	objectRefs := []ray.ObjectRef[float64]{slowFunction.Remote(0.2), slowFunction.Remote(2.0)}
	// Return as soon as one of the tasks finished (timeout < 0: no limit).
	ready, remaining, err := ray.Wait(ctx, objectRefs, 1, -1)
	if err != nil {
		return err
	}
	v, err := ray.Get(ctx, ready[0])
	if err != nil {
		return err
	}
	fmt.Printf("ready: %d (the %.1f s task) after %.1f s, remaining: %d\n", len(ready), v, time.Since(start).Seconds(), len(remaining))
	return nil
}

func main() {}
