// Package ray is the guest SDK of rayhost: Ray's task API for Go functions
// compiled to WebAssembly (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared).
// Runnable examples cover the concepts below: the Example functions of
// example_test.go, which `go test` runs in local mode and `go doc -http`
// (or pkg.go.dev) shows with each function.
//
// # A program
//
// Register remote functions at package level, register a driver with Main,
// and build the package as a reactor:
//
//	package main
//
//	import (
//		"context"
//		"fmt"
//
//		"github.com/rayhost/rayhost/guest-sdk/ray"
//	)
//
//	var square = ray.Func1("square", func(ctx context.Context, x int) (int, error) {
//		return x * x, nil
//	})
//
//	func init() { ray.Main(run) }
//
//	func run(ctx context.Context) error {
//		refs := make([]ray.ObjectRef[int], 4)
//		for i := range refs {
//			refs[i] = square.Remote(i) // returns at once: a future
//		}
//		squares, err := ray.GetAll(ctx, refs)
//		fmt.Println(squares) // [0 1 4 9]
//		return err
//	}
//
//	func main() {} // a reactor never runs main; Go requires it
//
// `rayhost run ./path/to/package` builds it and runs it on an embedded
// host (with --address, on a cluster); `rayhost vet ./path/to/package`
// checks its Remote calls (below). Each registered name must be unique in
// the module; a module that registers a name twice, or Main twice, is
// refused.
//
// # Remote functions
//
// A remote function is a Go function whose first parameter is a
// context.Context and whose last result is an error. Register it with the
// constructor for its shape; the numbers are the exact limits:
//
//	Func0 … Func8                    0 to 8 arguments, one result         *Function[R]
//	FuncN                            any number of arguments of one type (Ray's *args)
//	Func0x2 … Func8x2                0 to 8 arguments, two results        *Function2[R0, R1]
//	Func0x3 … Func8x3                0 to 8 arguments, three results      *Function3[R0, R1, R2]
//	Gen0 … Gen8                      generators, 0 to 8 arguments         *GeneratorFunction[T]
//	Actor0 … Actor8                  actor constructors, 0 to 8 arguments *ActorClass[S]
//	Method0 … Method8                actor methods, 0 to 8 arguments      *ActorMethod[S, R]
//	Method0x2 … Method8x3            actor methods with 2 or 3 results    *ActorMethod2, *ActorMethod3
//	GenMethod0 … GenMethod8          generator methods of actors          *ActorGeneratorMethod[S, T]
//
// The digit is the number of arguments, "x2" and "x3" the number of
// results (Ray's num_returns). For more, pass one struct (or use FuncN).
// The constructors are generated from one template (shapes_gen.go).
// Remote submits a call and returns at once with ObjectRefs (futures) for
// its results.
//
// # Arguments, values and ObjectRefs
//
// An argument of Remote is either a value of the parameter's type or an
// [ObjectRef] of that type: for a ref, the task starts once the value
// exists and receives the value, so results flow from task to task. Numbers
// fit any numeric parameter (3 may be passed for an int64 or a float64).
// Values travel as JSON, except []byte, which travels raw; an ObjectRef or
// an [ActorHandle] inside a value travels as a reference. Because Remote
// takes ...any (Go's generics cannot say "T or ObjectRef[T]" without
// wrapping every argument), a wrong argument is not a compile error: Remote
// then returns a ref whose Err (and Get) reports ErrBadArgument, and
// `rayhost vet` (package guest-sdk/rayvet) reports it before run time.
//
// # Get, GetAll, Wait, WaitAny, Put
//
// [Get] waits for one value, [GetAll] for several (failing as soon as one
// failed), and [Wait] for the first n of several, splitting them into ready
// and not ready. [WaitAny] is Wait over refs of different types and
// generators ([AnyRef], the untyped view of a ref). All honour ctx's
// deadline. A task blocked in them
// gives its CPU back to the host, so tasks may submit tasks and wait for
// them (nested tasks) without deadlock. [Put] stores a value once and
// returns its ref: pass it to many tasks instead of copying the value into
// each call.
//
// # Options, resources, retries
//
// An [Option] given at registration is a default of every call;
// f.Options(…) returns a copy of f whose calls use more. Resources
// ([NumCPUs], default 1; [NumGPUs]; custom amounts with [Resources]) decide
// where and when a call runs. [Spread] and [NodeAffinity] place calls in a
// cluster. [MaxRetries] (default 3) reruns a call whose worker died;
// application errors and panics are rerun, within MaxRetries, only with
// [RetryExceptions] (all, or those whose kind or [WithCode] code is
// listed; [NoRetryExceptions] turns it off again). [Timeout] and [MemoryLimit] bound each attempt; [MountDir] and
// [Env] grant a directory or environment variables, which a guest
// otherwise never has. [Backpressure] bounds a generator; [TaskEvents]
// turns event recording off.
//
// # Errors
//
// A task that fails (its function returned an error or panicked, an
// argument's task failed, it was cancelled, its worker died…) stores a
// [*TaskError] in its objects; Get returns it, with Kind, Message, the
// guest's Code and, for a panic, its Stack. errors.Is matches
// [ErrTaskFailed] for every TaskError, and [ErrTaskCancelled],
// [ErrWorkerDied], [ErrTaskTimeout], [ErrActorDied], [ErrObjectLost] and
// [ErrOwnerDied] by kind. A function that returns an error wrapping
// ErrTaskCancelled is recorded as cancelled.
//
// # Cancel
//
// [Cancel] stops the task that makes a ref: a queued task never runs; a
// running one sees Get, Wait, Sleep and Next return ErrTaskCancelled and
// can check [Cancelled] in a loop (force kills its worker; recursive also
// cancels what it submitted). Use [Sleep], not time.Sleep, to wait in a
// task: it ends early on cancellation.
//
// # Generators
//
// A generator (Gen0…Gen8, or an actor's GenMethod0…GenMethod8) yields
// items; each becomes an object the caller can use before the generator
// ends (Ray's streaming generators). Remote returns an
// [ObjectRefGenerator]: range over All, or call Next. Its Completed ref is
// ready once the generator has ended; WaitAny and Cancel take the
// generator itself.
//
// # Actors
//
// An actor is state built by a constructor (Actor0…Actor8) that lives on
// one worker; its methods (Method0…Method8, with several results
// Method0x2…Method8x3, generators GenMethod0…GenMethod8) run there one at a
// time, in the order they were submitted. [ActorHandle] is a value: pass it to tasks or
// other actors. [Name] makes an actor findable with [GetActor]; [Kill] ends
// it, and [MaxRestarts] lets it start again with fresh state. An actor dies
// once the task or actor that created it has ended and no handle to it is
// held anywhere (Ray's fate-sharing); [Detached] keeps it until it is
// killed.
//
// # Local mode
//
// [RunLocal] runs a driver in the current process (a native build, not
// Wasm), like Ray's local_mode: for unit tests of remote functions and for
// examples. It serves the same requests a host serves a guest, so the SDK
// runs the same code as in a guest, but there is no sandbox, no worker
// process and no resource accounting: real runs use `rayhost run`.
// Outside RunLocal, a native build has no host and the SDK's calls report
// [ErrNotInGuest].
//
// The host–guest ABI is documented in guest-sdk/ABI.md.
package ray

//go:generate go run ./internal/shapegen
