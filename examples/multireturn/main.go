// Command multireturn is the tasks guide's "Multiple Returns": one object
// holding a tuple, or one object (and ObjectRef) per result.
//
//	rayhost run ./examples/multireturn
package main

import (
	"context"
	"fmt"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

// By default a task returns a single ObjectRef: here, of a 3-element array.
var returnSingle = ray.Func0("return_single", func(ctx context.Context) ([3]int, error) {
	return [3]int{0, 1, 2}, nil
})

// A function with several results returns one ObjectRef per result.
var returnMultiple = ray.Func0x3("return_multiple", func(ctx context.Context) (int, int, int, error) {
	return 0, 1, 2, nil
})

func init() { ray.Main(run) }

func run(ctx context.Context) error {
	single, err := ray.Get(ctx, returnSingle.Remote())
	if err != nil {
		return err
	}
	fmt.Printf("return_single: %v\n", single)

	ref0, ref1, ref2 := returnMultiple.Remote()
	v0, err0 := ray.Get(ctx, ref0)
	v1, err1 := ray.Get(ctx, ref1)
	v2, err2 := ray.Get(ctx, ref2)
	for _, err := range []error{err0, err1, err2} {
		if err != nil {
			return err
		}
	}
	fmt.Printf("return_multiple: %d %d %d\n", v0, v1, v2)
	return nil
}

func main() {}
