// Package a holds Remote calls for rayvet's tests: each wrong one is
// followed by the finding it must produce.
package a

import (
	"context"
	"io"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

type point struct{ X, Y int }

type celsius float64

type label string

var (
	add   = ray.Func2("add", func(ctx context.Context, a, b int) (int, error) { return a + b, nil })
	hello = ray.Func1("hello", func(ctx context.Context, name string) (string, error) { return "hi " + name, nil })
	move  = ray.Func1("move", func(ctx context.Context, p *point) (int, error) { return p.X, nil })
	warm  = ray.Func1("warm", func(ctx context.Context, c celsius) (celsius, error) { return c + 1, nil })
	tag   = ray.Func1("tag", func(ctx context.Context, l label) (label, error) { return l, nil })
	write = ray.Func1("write", func(ctx context.Context, r io.Reader) (int, error) { return 0, nil })
	sum   = ray.FuncN("sum", func(ctx context.Context, xs ...float64) (float64, error) { return 0, nil })
	none  = ray.Func0("none", func(ctx context.Context) (int, error) { return 1, nil })
	three = ray.Func3("three", func(ctx context.Context, a int, b string, c []byte) (int, error) { return 0, nil })
	split = ray.Func1x2("split", func(ctx context.Context, s string) (string, string, error) { return s, s, nil })
	count = ray.Gen1("count", func(ctx context.Context, n int, yield func(int) error) error { return nil })
	pair  = ray.Gen2("pair", func(ctx context.Context, a int, b string, yield func(int) error) error { return nil })

	counter = ray.Actor1("Counter", func(ctx context.Context, start int) (*state, error) { return &state{}, nil })
	incr    = ray.Method1(counter, "incr", func(s *state, ctx context.Context, by int) (int, error) { return 0, nil })
	rename  = ray.Method2(counter, "rename", func(s *state, ctx context.Context, name string, p point) (int, error) { return 0, nil })
	reset   = ray.Method0(counter, "reset", func(s *state, ctx context.Context) (int, error) { return 0, nil })
	five    = ray.Func5("five", func(ctx context.Context, a, b, c, d int, e string) (int, error) { return 0, nil })
	halves  = ray.Func4x2("halves", func(ctx context.Context, a, b, c, d int) (int, int, error) { return 0, 0, nil })
	move3   = ray.Method3(counter, "move3", func(s *state, ctx context.Context, x, y int, l label) (int, error) { return 0, nil })
	both    = ray.Method1x2(counter, "both", func(s *state, ctx context.Context, by int) (int, int, error) { return 0, 0, nil })
	upTo    = ray.GenMethod1(counter, "up_to", func(s *state, ctx context.Context, n int, yield func(int) error) error { return nil })

	// late is registered in init: every assignment is a registration.
	late *ray.Function[int]
	// maybe is assigned something that is not a registration: not checked.
	maybe = add
)

type state struct{}

func init() {
	late = ray.Func1("late", func(ctx context.Context, s string) (int, error) { return len(s), nil })
	maybe = other()
}

func other() *ray.Function[int] { return nil }

func correct(ctx context.Context) {
	add.Remote(1, 2)
	add.Remote(add.Remote(1, 2), ray.Put(3))
	add.Remote(int64(1), 2.5) // numbers fit numbers
	hello.Remote("x")
	hello.Remote(ray.Put("x"))
	move.Remote(&point{})
	move.Remote(nil)
	warm.Remote(3)
	warm.Remote(celsius(3))
	tag.Remote(label("x"))
	write.Remote(nil)
	sum.Remote()
	sum.Remote(1, 2.5, int8(3), ray.Put(4))
	xs := []any{1, 2}
	sum.Remote(xs...)
	none.Remote()
	three.Remote(1, "b", []byte("c"))
	split.Remote("a,b")
	count.Remote(3)
	pair.Options(ray.Backpressure(1)).Remote(1, "x")
	h := counter.Remote(0)
	incr.Remote(h, 1)
	rename.Remote(h, "x", point{})
	reset.Remote(h)
	five.Remote(1, 2, 3, 4, "e")
	halves.Remote(1, 2, 3, ray.Put(4))
	move3.Remote(h, 1, 2, label("x"))
	both.Remote(h, 1)
	upTo.Remote(h, 3)
	late.Remote("abc")
	var v any = "dynamic"
	add.Remote(v, 1) // known only at run time
	maybe.Remote("not checked")
	local := ray.Func1("local", func(ctx context.Context, b bool) (bool, error) { return b, nil })
	local.Remote(true)
}

func wrong(ctx context.Context) {
	add.Remote("1", 2)                             // want `Remote of "add" \(ray.Func2\): argument 1: string for a parameter of type int`
	add.Remote(1)                                  // want `Remote of "add" \(ray.Func2\): 1 argument for 2 parameters`
	add.Remote(1, 2, 3)                            // want `3 arguments for 2 parameters`
	add.Remote(ray.Put("x"), 1)                    // want `argument 1: ray.ObjectRef\[string\] for a parameter of type int`
	add.Remote(hello.Remote("x"), 1)               // want `argument 1: ray.ObjectRef\[string\] for a parameter of type int`
	hello.Remote(1)                                // want `argument 1: int for a parameter of type string`
	move.Remote(point{})                           // want `argument 1: point for a parameter of type \*point`
	tag.Remote("x")                                // want `argument 1: string for a parameter of type label`
	write.Remote(3)                                // want `argument 1: int for a parameter of type io.Reader`
	none.Remote(1)                                 // want `1 argument for 0 parameters`
	sum.Remote(1, "two")                           // want `argument 2: string for a parameter of type float64`
	three.Remote(1, "b", "c")                      // want `argument 3: string for a parameter of type \[\]byte`
	split.Remote()                                 // want `0 arguments for 1 parameter`
	count.Remote("3")                              // want `Remote of "count" \(ray.Gen1\): argument 1: string`
	pair.Options(ray.Backpressure(1)).Remote(1, 2) // want `argument 2: int for a parameter of type string`
	hello.Remote(nil)                              // want `nil for a parameter of type string`
	h := counter.Remote("zero")                    // want `Remote of "Counter" \(ray.Actor1\): argument 1: string`
	incr.Remote(h, "1")                            // want `Remote of "incr" \(ray.Method1\): argument 1: string for a parameter of type int`
	incr.Remote(h)                                 // want `0 arguments for 1 parameter`
	rename.Remote(h, "x", ray.Put(1))              // want `argument 2: ray.ObjectRef\[int\] for a parameter of type point`
	reset.Remote(h, 1)                             // want `1 argument for 0 parameters`
	five.Remote(1, 2, 3, 4, 5)                     // want `Remote of "five" \(ray.Func5\): argument 5: int for a parameter of type string`
	halves.Remote(1, 2, 3)                         // want `Remote of "halves" \(ray.Func4x2\): 3 arguments for 4 parameters`
	move3.Remote(h, 1, 2, "x")                     // want `Remote of "move3" \(ray.Method3\): argument 3: string for a parameter of type label`
	both.Remote(h, "1")                            // want `Remote of "both" \(ray.Method1x2\): argument 1: string`
	upTo.Remote(h)                                 // want `Remote of "up_to" \(ray.GenMethod1\): 0 arguments for 1 parameter`
	late.Remote(1)                                 // want `Remote of "late" \(ray.Func1\): argument 1: int`
	local := ray.Func1("local2", func(ctx context.Context, b bool) (bool, error) { return b, nil })
	local.Remote(1) // want `argument 1: int for a parameter of type bool`
}
