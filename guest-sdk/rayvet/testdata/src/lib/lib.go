// Package lib registers remote functions that package b calls: their
// signatures reach b as facts.
package lib

import (
	"context"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

// Point is a parameter type of another package.
type Point struct{ X, Y int }

// Meters is a defined numeric type.
type Meters float64

// Ints is a defined slice type.
type Ints []int

var (
	Add   = ray.Func2("lib.add", func(ctx context.Context, a, b int) (int, error) { return a + b, nil })           // want Add:`remote Func2 "lib.add"\(int, int\)`
	Move  = ray.Func1("lib.move", func(ctx context.Context, p Point) (Point, error) { return p, nil })             // want Move:`remote Func1 "lib.move"\(lib.Point\)`
	Walk  = ray.Func1("lib.walk", func(ctx context.Context, m Meters) (Meters, error) { return m, nil })           // want Walk:`remote Func1`
	Total = ray.Func1("lib.total", func(ctx context.Context, xs Ints) (int, error) { return len(xs), nil })        // want Total:`remote Func1`
	Named = Add.Options(ray.NumCPUs(2))                                                                            // want Named:`remote Func2 "lib.add"`
	Shape = ray.Actor0("lib.Shape", func(ctx context.Context) (*Point, error) { return &Point{}, nil })            // want Shape:`remote Actor0 "lib.Shape"\(\)`
	Grow  = ray.Method1(Shape, "grow", func(p *Point, ctx context.Context, by int) (int, error) { return 0, nil }) // want Grow:`remote Method1 "grow"\(int\)`
)
