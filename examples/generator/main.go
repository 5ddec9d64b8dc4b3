// Command generator is the tasks guide's "Generators": a task that yields
// its results, which the caller gets one by one while the task still runs.
//
//	rayhost run ./examples/generator
package main

import (
	"context"
	"fmt"
	"time"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

// The guide sleeps 5 s between items; 500 ms shows the same thing sooner.
const interval = 500 * time.Millisecond

var task = ray.Gen0("task", func(ctx context.Context, yield func(int) error) error {
	for i := range 5 {
		if err := ray.Sleep(ctx, interval); err != nil {
			return err
		}
		if err := yield(i); err != nil {
			return err
		}
	}
	return nil
})

func init() { ray.Main(run) }

func run(ctx context.Context) error {
	start := time.Now()
	// The generator yields an item every 500 ms; each arrives as it is made.
	for ref, err := range task.Remote().All(ctx) {
		if err != nil {
			return err
		}
		v, err := ray.Get(ctx, ref)
		if err != nil {
			return err
		}
		fmt.Printf("%d (after %.1f s)\n", v, time.Since(start).Seconds())
	}
	return nil
}

func main() {}
