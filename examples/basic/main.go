// Command basic is the tasks guide's "Basic Usage": a remote function,
// its ObjectRef, Get, and tasks that run in the background.
//
//	rayhost run ./examples/basic
package main

import (
	"context"
	"fmt"
	"time"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

// A regular Go function.
func normalFunction() int { return 1 }

// Registering it with ray.Func0 makes it a remote function.
var myFunction = ray.Func0("my_function", func(ctx context.Context) (int, error) {
	return 1, nil
})

var slowFunction = ray.Func0("slow_function", func(ctx context.Context) (int, error) {
	return 1, ray.Sleep(ctx, 10*time.Second)
})

func init() { ray.Main(run) }

func run(ctx context.Context) error {
	// Remote returns at once with an ObjectRef (a future); the task runs on
	// a worker process.
	objRef := myFunction.Remote()
	v, err := ray.Get(ctx, objRef)
	if err != nil {
		return err
	}
	fmt.Printf("normal_function() = %d, ray.Get(my_function.Remote()) = %d\n", normalFunction(), v)

	// Tasks run in parallel, in the background: this loop does not block.
	start := time.Now()
	for range 4 {
		slowFunction.Remote()
	}
	fmt.Printf("submitted 4 slow tasks in %v without waiting for them\n", time.Since(start).Round(time.Microsecond))
	return nil
}

func main() {}
