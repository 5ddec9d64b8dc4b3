package ray

import (
	"context"
	"fmt"
	"reflect"

	"github.com/rayhost/rayhost/internal/abi"
)

// Actor methods with several results (Ray's @ray.method(num_returns=n)):
// each result is its own object with its own ObjectRef, as for Func0x2.
//
//	var beforeAfter = ray.Method1x2(counterClass, "before_after",
//		func(c *Counter, ctx context.Context, by int) (int, int, error) {
//			before := c.n
//			c.n += by
//			return before, c.n, nil
//		})
//	before, after := beforeAfter.Remote(counter, 4)
//
// And generator methods (Ray's generators on actor methods): each item the
// method yields is an object the caller can use at once, while the method
// still runs on the actor.
//
//	var countUp = ray.GenMethod1(counterClass, "count_up",
//		func(c *Counter, ctx context.Context, n int, yield func(int) error) error { … })
//	for ref, err := range countUp.Remote(counter, 3).All(ctx) { … }

// ActorMethod2 is a method of actors of type S with two results.
type ActorMethod2[S, R0, R1 any] struct {
	e    *entry
	opts options
}

// ActorMethod3 is a method of actors of type S with three results.
type ActorMethod3[S, R0, R1, R2 any] struct {
	e    *entry
	opts options
}

// ActorGeneratorMethod is a generator method of actors of type S whose
// items have type T.
type ActorGeneratorMethod[S, T any] struct {
	e    *entry
	opts options
}

// Options returns a copy of m whose calls use opts.
func (m *ActorMethod2[S, R0, R1]) Options(opts ...Option) *ActorMethod2[S, R0, R1] {
	g := *m
	g.opts = m.opts.with(opts)
	return &g
}

// Options returns a copy of m whose calls use opts.
func (m *ActorMethod3[S, R0, R1, R2]) Options(opts ...Option) *ActorMethod3[S, R0, R1, R2] {
	g := *m
	g.opts = m.opts.with(opts)
	return &g
}

// Options returns a copy of m whose calls use opts (Backpressure, say).
func (m *ActorGeneratorMethod[S, T]) Options(opts ...Option) *ActorGeneratorMethod[S, T] {
	g := *m
	g.opts = m.opts.with(opts)
	return &g
}

// Remote calls the method on the actor h names and returns at once, with
// one ObjectRef per result.
func (m *ActorMethod2[S, R0, R1]) Remote(h ActorHandle[S], args ...any) (ObjectRef[R0], ObjectRef[R1]) {
	rs := callMethod(m.e, m.opts, h, args)
	return typedRef[R0](rs[0]), typedRef[R1](rs[1])
}

// Remote calls the method on the actor h names and returns at once, with
// one ObjectRef per result.
func (m *ActorMethod3[S, R0, R1, R2]) Remote(h ActorHandle[S], args ...any) (ObjectRef[R0], ObjectRef[R1], ObjectRef[R2]) {
	rs := callMethod(m.e, m.opts, h, args)
	return typedRef[R0](rs[0]), typedRef[R1](rs[1]), typedRef[R2](rs[2])
}

// Remote calls the generator method on the actor h names and returns its
// stream of ObjectRefs at once.
func (m *ActorGeneratorMethod[S, T]) Remote(h ActorHandle[S], args ...any) *ObjectRefGenerator[T] {
	if h.err != nil {
		return &ObjectRefGenerator[T]{err: h.err}
	}
	id, owner, err := submitKind(m.e, m.opts, args, abi.KindActorCall, h.id)
	if err != nil {
		return &ObjectRefGenerator[T]{err: fmt.Errorf("%s.Remote: %w", m.e.name, err)}
	}
	return &ObjectRefGenerator[T]{task: id, owner: owner}
}

// untypedRef is one result of a call, before it gets its type.
type untypedRef = ObjectRef[struct{}]

func typedRef[T any](r untypedRef) ObjectRef[T] {
	return ObjectRef[T]{id: r.id, owner: r.owner, err: r.err, h: r.h}
}

// callMethod submits a call of a method with e.numReturns results and
// returns their refs, each failed with the submission's error if it failed.
func callMethod[S any](e *entry, o options, h ActorHandle[S], args []any) []untypedRef {
	out := make([]untypedRef, e.numReturns)
	err := h.err
	if err == nil {
		id, owner, serr := submitKind(e, o, args, abi.KindActorCall, h.id)
		if serr == nil {
			for i := range out {
				out[i] = untypedRef{id: id.Return(i), owner: owner, h: track(id.Return(i), 1)}
			}
			return out
		}
		err = fmt.Errorf("%s.Remote: %w", e.name, serr)
	}
	for i := range out {
		out[i] = untypedRef{err: err}
	}
	return out
}

func registerMethodMulti[S any](class *ActorClass[S], name string, argTypes []reflect.Type, n int, call func(s *S, ctx context.Context, args []abi.Value) ([]any, error)) *entry {
	e := &entry{name: class.e.name + "." + name, argTypes: argTypes, numReturns: n, actor: "method"}
	e.call = func(ctx context.Context, args []abi.Value) ([]abi.Value, error) {
		s, err := stateOf(ctx, class)
		if err != nil {
			return nil, err
		}
		rs, err := call(s, ctx, args)
		if err != nil {
			return nil, err
		}
		return encodeAll(rs...)
	}
	register(e)
	return e
}

func registerGenMethod[S, T any](class *ActorClass[S], name string, argTypes []reflect.Type, run func(s *S, ctx context.Context, args []abi.Value, yield func(T) error) error) *ActorGeneratorMethod[S, T] {
	e := &entry{name: class.e.name + "." + name, argTypes: argTypes, generator: true, actor: "method"}
	e.call = func(ctx context.Context, args []abi.Value) ([]abi.Value, error) {
		s, err := stateOf(ctx, class)
		if err != nil {
			return nil, err
		}
		return nil, run(s, ctx, args, yieldItem[T])
	}
	register(e)
	return &ActorGeneratorMethod[S, T]{e: e}
}
