package ray

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"reflect"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// Generators stream their results: each item the function yields becomes an
// object the caller can use at once, before the task ends (Ray's streaming
// generators).
//
//	var ticks = ray.Gen0("ticks", func(ctx context.Context, yield func(int) error) error {
//		for i := range 5 {
//			if err := ray.Sleep(ctx, time.Second); err != nil {
//				return err
//			}
//			if err := yield(i); err != nil {
//				return err
//			}
//		}
//		return nil
//	})
//
//	for ref, err := range ticks.Remote().All(ctx) { … ray.Get(ctx, ref) … }
//
// An error returned by the function (or a panic) becomes an error object at
// its place in the stream: the items before it are delivered as usual.

// GeneratorFunction is a registered generator whose items have type T.
type GeneratorFunction[T any] struct {
	e    *entry
	opts options
}

// Options returns a copy of f whose calls use opts on top of f's own.
func (f *GeneratorFunction[T]) Options(opts ...Option) *GeneratorFunction[T] {
	g := *f
	g.opts = f.opts.with(opts)
	return &g
}

// Remote starts the generator and returns its stream of ObjectRefs.
func (f *GeneratorFunction[T]) Remote(args ...any) *ObjectRefGenerator[T] {
	id, owner, err := submit(f.e, f.opts, args)
	if err != nil {
		return &ObjectRefGenerator[T]{err: fmt.Errorf("%s.Remote: %w", f.e.name, err)}
	}
	return &ObjectRefGenerator[T]{task: id, owner: owner}
}

// ObjectRefGenerator is the stream of a generator's items.
type ObjectRefGenerator[T any] struct {
	task  ids.TaskID
	owner string
	next  uint32
	err   error
}

// The generator is an AnyRef too, as in Ray, where ray.wait and
// ray.cancel take an ObjectRefGenerator: WaitAny finds it ready once its
// next item exists or its stream has ended, and Cancel cancels its task.
// It cannot be an argument of Remote (ErrBadArgument).

// ID is the hex ID of the generator's task (32 digits; an ObjectRef's ID
// has 40).
func (g *ObjectRefGenerator[T]) ID() string { return g.task.String() }

// Err reports whether starting the generator failed. Next, Get on its
// refs and Completed report the same error.
func (g *ObjectRefGenerator[T]) Err() error { return g.err }

func (g *ObjectRefGenerator[T]) abiRef() abi.Ref        { return g.NextRef().abiRef() }
func (g *ObjectRefGenerator[T]) refErr() error          { return g.err }
func (g *ObjectRefGenerator[T]) refHandle() *handle     { return nil }
func (g *ObjectRefGenerator[T]) elemType() reflect.Type { return nil } // not an argument

// Completed is an ObjectRef that is ready once the generator task has
// ended, Ray's ObjectRefGenerator.completed(): Get on it returns no error
// when the generator returned nil, and the generator's failure otherwise
// (ErrTaskCancelled once it was cancelled). Pass it to Wait or WaitAny to
// learn whether the generator still runs. It is ready after the stream's
// last item and its end: once it is, Next never waits.
func (g *ObjectRefGenerator[T]) Completed() ObjectRef[struct{}] {
	return ObjectRef[struct{}]{id: g.task.Completion(), owner: g.owner, err: g.err}
}

// NextRef is the ObjectRef of the next item, without waiting for it. Pass
// it to Wait: it is ready once the item exists, or once the stream has
// ended (then Next reports ErrEndOfStream).
func (g *ObjectRefGenerator[T]) NextRef() ObjectRef[T] {
	return ObjectRef[T]{id: g.task.Return(int(g.next)), owner: g.owner, err: g.err}
}

// Next waits for the next item and returns its ObjectRef, or an error for
// which errors.Is(err, ErrEndOfStream) once the generator is done. ctx's
// deadline bounds the wait (ErrGetTimeout).
func (g *ObjectRefGenerator[T]) Next(ctx context.Context) (ObjectRef[T], error) {
	if g.err != nil {
		return ObjectRef[T]{}, g.err
	}
	req := abi.NextRequest{Task: g.task, Index: g.next, TimeoutNs: timeoutFrom(ctx)}
	b, err := hostCall(abi.OpNext, req.Encode(nil))
	if err != nil {
		return ObjectRef[T]{}, err
	}
	var rep abi.NextReply
	if err := rep.Decode(b); err != nil {
		return ObjectRef[T]{}, fmt.Errorf("%w: malformed next reply", ErrHost)
	}
	if rep.End {
		return ObjectRef[T]{}, ErrEndOfStream
	}
	ref := g.NextRef()
	g.next++
	return ref, nil
}

// All ranges over the items' ObjectRefs as they are produced. It stops at
// the end of the stream, or after yielding an error.
func (g *ObjectRefGenerator[T]) All(ctx context.Context) iter.Seq2[ObjectRef[T], error] {
	return func(yield func(ObjectRef[T], error) bool) {
		for {
			ref, err := g.Next(ctx)
			if errors.Is(err, ErrEndOfStream) {
				return
			}
			if !yield(ref, err) || err != nil {
				return
			}
		}
	}
}

func registerGenerator[T any](name string, argTypes []reflect.Type, run func(ctx context.Context, args []abi.Value, yield func(T) error) error, opts []Option) *GeneratorFunction[T] {
	e := &entry{name: name, argTypes: argTypes, numReturns: 0, generator: true, opts: options{}.with(opts)}
	e.call = func(ctx context.Context, args []abi.Value) ([]abi.Value, error) {
		return nil, run(ctx, args, yieldItem[T])
	}
	register(e)
	return &GeneratorFunction[T]{e: e, opts: e.opts}
}

// yieldItem sends v as the running generator's next item.
func yieldItem[T any](v T) error {
	val, err := encodeValue(v)
	if err != nil {
		return err
	}
	_, err = hostCall(abi.OpYield, abi.EncodeValue(nil, val))
	return err
}
