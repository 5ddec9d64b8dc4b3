package ray

import (
	"context"
	"fmt"
	"reflect"

	"github.com/rayhost/rayhost/internal/abi"
)

// Functions with several results, Ray's num_returns: each result is its own
// object with its own ObjectRef, gettable (and passable) on its own.
//
//	var returnMultiple = ray.Func0x3("return_multiple",
//		func(ctx context.Context) (int, int, int, error) { return 0, 1, 2, nil })
//	r0, r1, r2 := returnMultiple.Remote()

// Function2 is a remote function with two results.
type Function2[R0, R1 any] struct {
	e    *entry
	opts options
}

// Function3 is a remote function with three results.
type Function3[R0, R1, R2 any] struct {
	e    *entry
	opts options
}

// Options returns a copy of f whose calls use opts on top of f's own.
func (f *Function2[R0, R1]) Options(opts ...Option) *Function2[R0, R1] {
	g := *f
	g.opts = f.opts.with(opts)
	return &g
}

// Options returns a copy of f whose calls use opts on top of f's own.
func (f *Function3[R0, R1, R2]) Options(opts ...Option) *Function3[R0, R1, R2] {
	g := *f
	g.opts = f.opts.with(opts)
	return &g
}

// Remote submits a call and returns one ObjectRef per result.
func (f *Function2[R0, R1]) Remote(args ...any) (ObjectRef[R0], ObjectRef[R1]) {
	id, owner, err := submit(f.e, f.opts, args)
	if err != nil {
		err = fmt.Errorf("%s.Remote: %w", f.e.name, err)
		return ObjectRef[R0]{err: err}, ObjectRef[R1]{err: err}
	}
	return ObjectRef[R0]{id: id.Return(0), owner: owner, h: track(id.Return(0), 1)}, ObjectRef[R1]{id: id.Return(1), owner: owner, h: track(id.Return(1), 1)}
}

// Remote submits a call and returns one ObjectRef per result.
func (f *Function3[R0, R1, R2]) Remote(args ...any) (ObjectRef[R0], ObjectRef[R1], ObjectRef[R2]) {
	id, owner, err := submit(f.e, f.opts, args)
	if err != nil {
		err = fmt.Errorf("%s.Remote: %w", f.e.name, err)
		return ObjectRef[R0]{err: err}, ObjectRef[R1]{err: err}, ObjectRef[R2]{err: err}
	}
	return ObjectRef[R0]{id: id.Return(0), owner: owner, h: track(id.Return(0), 1)}, ObjectRef[R1]{id: id.Return(1), owner: owner, h: track(id.Return(1), 1)},
		ObjectRef[R2]{id: id.Return(2), owner: owner, h: track(id.Return(2), 1)}
}

// encodeAll encodes a call's results, one value each.
func encodeAll(rs ...any) ([]abi.Value, error) {
	out := make([]abi.Value, len(rs))
	for i, r := range rs {
		v, err := encodeValue(r)
		if err != nil {
			return nil, fmt.Errorf("encoding result %d: %w", i+1, err)
		}
		out[i] = v
	}
	return out, nil
}

func registerMulti(name string, argTypes []reflect.Type, n int, opts []Option, call func(context.Context, []abi.Value) ([]any, error)) *entry {
	e := &entry{name: name, argTypes: argTypes, numReturns: n, opts: options{}.with(opts)}
	e.call = func(ctx context.Context, args []abi.Value) ([]abi.Value, error) {
		rs, err := call(ctx, args)
		if err != nil {
			return nil, err
		}
		return encodeAll(rs...)
	}
	register(e)
	return e
}
