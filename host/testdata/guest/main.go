// Command guest is the test guest of package host: small remote functions
// that exercise each path of the host (values, refs, nesting, failures).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

var add = ray.Func2("add", func(ctx context.Context, a, b int) (int, error) {
	return a + b, nil
})

var _ = ray.Func1("echo_bytes", func(ctx context.Context, b []byte) ([]byte, error) {
	return b, nil
})

var _ = ray.Func1("make_bytes", func(ctx context.Context, n int) ([]byte, error) {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b, nil
})

var _ = ray.Func1("fail", func(ctx context.Context, msg string) (int, error) {
	return 0, errors.New(msg)
})

var _ = ray.Func1("panic", func(ctx context.Context, msg string) (int, error) {
	panic(msg)
})

// spin burns CPU for ms milliseconds without calling the host: the case
// wazero cannot preempt.
var _ = ray.Func1("spin", func(ctx context.Context, ms int) (int, error) {
	deadline := time.Now().Add(time.Duration(ms) * time.Millisecond)
	n := 0
	for time.Now().Before(deadline) {
		for range 1000 {
			n++
		}
	}
	return n, nil
})

var _ = ray.Func1("sleep", func(ctx context.Context, ms int) (int, error) {
	return ms, ray.Sleep(ctx, time.Duration(ms)*time.Millisecond)
})

var _ = ray.Func1("nested_sum", func(ctx context.Context, n int) (int, error) {
	refs := make([]ray.ObjectRef[int], n)
	for i := range refs {
		refs[i] = add.Remote(i, i)
	}
	vals, err := ray.GetAll(ctx, refs)
	if err != nil {
		return 0, err
	}
	sum := 0
	for _, v := range vals {
		sum += v
	}
	return sum, nil
})

// get_nested receives a ref inside a value and gets it itself.
var _ = ray.Func1("get_nested", func(ctx context.Context, refs []ray.ObjectRef[int]) (int, error) {
	vals, err := ray.GetAll(ctx, refs)
	if err != nil {
		return 0, err
	}
	sum := 0
	for _, v := range vals {
		sum += v
	}
	return sum, nil
})

var _ = ray.Func1("hello", func(ctx context.Context, name string) (string, error) {
	fmt.Printf("hello, %s\n", name)
	fmt.Fprintf(os.Stderr, "to stderr\n")
	return "hi " + name, nil
})

var _ = ray.Func1("exit", func(ctx context.Context, code int) (int, error) {
	os.Exit(code)
	return 0, nil
})

func init() {
	ray.Main(func(ctx context.Context) error {
		fmt.Println("driver starting")
		v, err := ray.Get(ctx, add.Remote(20, 22))
		if err != nil {
			return err
		}
		fmt.Printf("driver got %d\n", v)
		return nil
	})
}

func main() {}
