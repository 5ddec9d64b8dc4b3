package ray

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"sync"

	"github.com/rayhost/rayhost/internal/abi"
)

// entry is a registered remote function, reduced to bytes in, bytes out.
type entry struct {
	name       string
	argTypes   []reflect.Type
	variadic   reflect.Type // FuncN: the type of every argument
	numReturns int
	generator  bool
	actor      string  // "class" or "method" for actors
	opts       options // given at registration
	call       func(ctx context.Context, args []abi.Value) ([]abi.Value, error)
}

var (
	registryMu  sync.Mutex
	registry    = map[string]*entry{}
	mainFn      func(context.Context) error
	registerErr error // the first registration mistake, reported by Describe
)

func register(e *entry) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if e.name == "" {
		registerErr = firstErr(registerErr, fmt.Errorf("ray: a remote function needs a name"))
		return
	}
	if e.opts.err != nil {
		registerErr = firstErr(registerErr, fmt.Errorf("ray: remote function %q: %w", e.name, e.opts.err))
		return
	}
	if !validResources(e.opts.resources()) {
		registerErr = firstErr(registerErr, fmt.Errorf("ray: remote function %q: %s", e.name, errResources))
		return
	}
	if _, dup := registry[e.name]; dup {
		registerErr = firstErr(registerErr, fmt.Errorf("ray: remote function %q registered twice", e.name))
		return
	}
	registry[e.name] = e
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func lookup(name string) *entry {
	registryMu.Lock()
	defer registryMu.Unlock()
	return registry[name]
}

func describe() abi.Description {
	registryMu.Lock()
	defer registryMu.Unlock()
	d := abi.Description{ABI: abi.Version, HasMain: mainFn != nil, Codecs: []string{abi.CodecInts.String(), abi.CodecCBOR.String()}}
	for _, e := range registry {
		n := len(e.argTypes)
		if e.variadic != nil {
			n = -1
		}
		d.Functions = append(d.Functions, abi.FunctionInfo{Name: e.name, NumArgs: n, NumReturns: e.numReturns,
			Generator: e.generator, Actor: e.actor, Defaults: e.opts.call()})
	}
	sort.Slice(d.Functions, func(i, j int) bool { return d.Functions[i].Name < d.Functions[j].Name })
	if registerErr != nil {
		d.Error = registerErr.Error()
	}
	return d
}

// Main registers the module's driver: what `rayhost run` executes, like the
// body of a Ray script. A Go reactor module never runs its func main, so
// register the driver from a package-level variable or an init function:
//
//	func init() { ray.Main(run) }
func Main(fn func(ctx context.Context) error) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if mainFn != nil {
		registerErr = firstErr(registerErr, fmt.Errorf("ray: Main registered twice"))
		return
	}
	mainFn = fn
}

// Function is a registered remote function whose result has type R. Call
// Remote to run it as a task.
type Function[R any] struct {
	e    *entry
	opts options
}

// Name is the name the function is registered under.
func (f *Function[R]) Name() string { return f.e.name }

// Options returns a copy of f whose calls use opts on top of f's own.
func (f *Function[R]) Options(opts ...Option) *Function[R] {
	g := *f
	g.opts = f.opts.with(opts)
	return &g
}

// Remote submits a call of f and returns at once with an ObjectRef for its
// result. Each argument is either a value of the parameter's type or an
// ObjectRef of that type; for a ref, the task runs once the value exists and
// receives the value. A mistake in the arguments (ErrBadArgument) is
// reported by Get on the returned ref and by its Err method; `rayhost vet`
// (package guest-sdk/rayvet) reports it before run time.
func (f *Function[R]) Remote(args ...any) ObjectRef[R] {
	id, owner, err := submit(f.e, f.opts, args)
	if err != nil {
		return ObjectRef[R]{err: fmt.Errorf("%s.Remote: %w", f.e.name, err)}
	}
	return ObjectRef[R]{id: id.Return(0), owner: owner, h: track(id.Return(0), 1)}
}

func newFunction[R any](name string, argTypes []reflect.Type, call func(context.Context, []abi.Value) (R, error), opts []Option) *Function[R] {
	e := &entry{name: name, argTypes: argTypes, numReturns: 1}
	e.call = func(ctx context.Context, args []abi.Value) ([]abi.Value, error) {
		r, err := call(ctx, args)
		if err != nil {
			return nil, err
		}
		v, err := encodeValue(r)
		if err != nil {
			return nil, fmt.Errorf("encoding the result: %w", err)
		}
		return []abi.Value{v}, nil
	}
	e.opts = options{}.with(opts)
	register(e)
	return &Function[R]{e: e, opts: e.opts}
}

// argError marks a failure to decode an argument: the caller's mistake, not
// the function's.
type argError struct{ err error }

func (e argError) Error() string { return e.err.Error() }
func (e argError) Unwrap() error { return e.err }

func arg[T any](args []abi.Value, i int) (T, error) {
	v, err := decodeValue[T](args[i])
	if err != nil {
		return v, argError{fmt.Errorf("argument %d: %w", i+1, err)}
	}
	return v, nil
}

// FuncN registers fn as the remote function name, taking any number of
// arguments of one type (Ray's *args).
func FuncN[A, R any](name string, fn func(context.Context, ...A) (R, error), opts ...Option) *Function[R] {
	e := newFunction(name, nil, func(ctx context.Context, args []abi.Value) (R, error) {
		var zero R
		as := make([]A, len(args))
		for i := range args {
			a, err := arg[A](args, i)
			if err != nil {
				return zero, err
			}
			as[i] = a
		}
		return fn(ctx, as...)
	}, opts)
	e.e.variadic = reflect.TypeFor[A]()
	return e
}
