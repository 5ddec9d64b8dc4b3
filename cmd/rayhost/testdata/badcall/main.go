// Package main is a guest with a Remote call whose argument does not fit:
// rayhost vet (and so rayhost run) must report it before run time.
package main

import (
	"context"
	"fmt"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

var square = ray.Func1("square", func(ctx context.Context, x int) (int, error) { return x * x, nil })

func init() {
	ray.Main(func(ctx context.Context) error {
		v, err := ray.Get(ctx, square.Remote("seven")) // a string where an int is wanted
		fmt.Println(v)
		return err
	})
}

func main() {}
