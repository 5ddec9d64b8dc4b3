// Command resources is the tasks guide's "Specifying Resource
// Requirements": resources at registration, overridden per call, and a
// request no host can satisfy, which fails at once instead of hanging.
//
//	rayhost run --num-cpus 4 --num-gpus 2 ./examples/resources
package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

// Specify required resources.
var myFunction = ray.Func0("my_function", func(ctx context.Context) (int, error) {
	return 1, nil
}, ray.NumCPUs(4), ray.NumGPUs(2))

func init() { ray.Main(run) }

func run(ctx context.Context) error {
	v, err := ray.Get(ctx, myFunction.Remote())
	if err != nil {
		return err
	}
	fmt.Printf("with 4 CPUs and 2 GPUs: %d\n", v)

	// Override the default resource requirements.
	v, err = ray.Get(ctx, myFunction.Options(ray.NumCPUs(3)).Remote())
	if err != nil {
		return err
	}
	fmt.Printf("with 3 CPUs: %d\n", v)

	// A request larger than the host fails fast with a clear error.
	_, err = ray.Get(ctx, myFunction.Options(ray.NumGPUs(64)).Remote())
	var te *ray.TaskError
	if !errors.As(err, &te) || te.Kind != "infeasible" {
		return fmt.Errorf("want an infeasible error, got %v", err)
	}
	fmt.Printf("with 64 GPUs: %s\n", te.Message)
	return nil
}

func main() {}
