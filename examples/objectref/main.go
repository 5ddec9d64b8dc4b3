// Command objectref is the tasks guide's "Passing Object References to
// Tasks": a ref passed as an argument arrives as its value, and the second
// task waits for the first.
//
//	rayhost run ./examples/objectref
package main

import (
	"context"
	"fmt"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

var myFunction = ray.Func0("my_function", func(ctx context.Context) (int, error) {
	return 1, nil
})

var functionWithAnArgument = ray.Func1("function_with_an_argument", func(ctx context.Context, value int) (int, error) {
	return value + 1, nil
})

func init() { ray.Main(run) }

func run(ctx context.Context) error {
	objRef1 := myFunction.Remote()
	v1, err := ray.Get(ctx, objRef1)
	if err != nil {
		return err
	}
	// Pass the ref itself: the task receives 1, not the ref.
	objRef2 := functionWithAnArgument.Remote(objRef1)
	v2, err := ray.Get(ctx, objRef2)
	if err != nil {
		return err
	}
	fmt.Printf("ray.Get(objRef1) = %d, ray.Get(objRef2) = %d\n", v1, v2)
	return nil
}

func main() {}
