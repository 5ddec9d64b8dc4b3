// Package b calls remote functions registered in another package.
package b

import (
	"context"

	"github.com/rayhost/rayhost/guest-sdk/ray"
	"github.com/rayhost/rayhost/guest-sdk/rayvet/testdata/src/lib"
)

func correct(ctx context.Context) {
	lib.Add.Remote(1, ray.Put(2))
	lib.Move.Remote(lib.Point{X: 1})
	lib.Walk.Remote(3)
	lib.Walk.Remote(lib.Meters(3))
	lib.Total.Remote([]int{1, 2})
	lib.Total.Remote(lib.Ints{1})
	lib.Total.Remote(nil)
	lib.Named.Remote(1, 2)
	h := lib.Shape.Remote()
	lib.Grow.Remote(h, 2)
}

func wrong(ctx context.Context) {
	lib.Add.Remote("1", 2)                   // want `Remote of "lib.add" \(ray.Func2\): argument 1: string for a parameter of type int`
	lib.Add.Remote(1)                        // want `1 argument for 2 parameters`
	lib.Move.Remote(struct{ X, Y int }{})    // ok: identical underlying type, one side unnamed
	lib.Move.Remote(&lib.Point{})            // want `argument 1: \*lib.Point for a parameter of type lib.Point`
	lib.Move.Remote(ray.Put(lib.Meters(1)))  // want `argument 1: ray.ObjectRef\[lib.Meters\] for a parameter of type lib.Point`
	lib.Walk.Remote("far")                   // want `argument 1: string for a parameter of type lib.Meters`
	lib.Total.Remote([]string{"a"})          // want `argument 1: \[\]string for a parameter of type lib.Ints`
	lib.Named.Remote(1, 2, 3)                // want `3 arguments for 2 parameters`
	lib.Shape.Remote(1)                      // want `1 argument for 0 parameters`
	lib.Grow.Remote(lib.Shape.Remote(), "x") // want `Remote of "grow" \(ray.Method1\): argument 1: string for a parameter of type int`
}
