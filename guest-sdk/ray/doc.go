// Package ray is the guest SDK of rayhost: Ray's task API for Go functions
// compiled to WebAssembly (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared).
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
// Then `rayhost run ./path/to/package` builds and runs it on an embedded
// host, or `--address` runs it on a cluster.
//
// Values travel as JSON, except []byte, which travels raw. An argument of
// Remote is either a value of the parameter's type or an [ObjectRef] of that
// type; the task receives the value. Get, GetAll and Wait block; a task
// blocked in them gives its CPU back to the host, so tasks may submit and
// wait for other tasks (nested parallelism) without deadlock.
//
// The host–guest ABI is documented in guest-sdk/ABI.md.
package ray
