// Command hostile is a guest that attacks its host: runaway loops, memory
// bombs, garbage pointers, floods of output, attempts to reach files,
// sockets and the environment, and nesting bombs. Package host's tests run
// each one and then check the host still serves a normal task.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"unsafe"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

var _ = ray.Func0("ok", func(ctx context.Context) (string, error) { return "ok", nil })

// loop spins without ever calling the host: only a timeout stops it.
var _ = ray.Func0("loop", func(ctx context.Context) (int, error) {
	n := 0
	for {
		n++
	}
})

var sink [][]byte

var _ = ray.Func0("memory_bomb", func(ctx context.Context) (int, error) {
	for {
		sink = append(sink, make([]byte, 16<<20))
	}
})

func recurse(n int) int {
	var pad [1024]byte
	pad[n%1024] = byte(n)
	return recurse(n+1) + int(pad[0])
}

var _ = ray.Func0("deep_recursion", func(ctx context.Context) (int, error) { return recurse(0), nil })

var _ = ray.Func1("big_result", func(ctx context.Context, n int) ([]byte, error) { return make([]byte, n), nil })

var _ = ray.Func0("print_forever", func(ctx context.Context) (int, error) {
	line := strings.Repeat("spam ", 20) + "\n"
	for {
		fmt.Print(line)
	}
})

var _ = ray.Func0("open_file", func(ctx context.Context) (string, error) {
	_, err := os.ReadFile("/etc/passwd")
	if err == nil {
		return "", fmt.Errorf("read /etc/passwd")
	}
	return err.Error(), nil
})

var _ = ray.Func1("dial", func(ctx context.Context, addr string) (string, error) {
	c, err := net.Dial("tcp", addr)
	if err == nil {
		c.Close()
		return "", fmt.Errorf("dialled a socket")
	}
	return err.Error(), nil
})

var _ = ray.Func0("environment", func(ctx context.Context) ([]string, error) {
	return append(os.Environ(), "HOME="+os.Getenv("HOME")), nil
})

var _ = ray.Func1("read_granted", func(ctx context.Context, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path+".new", b, 0o644); err == nil {
		return "", fmt.Errorf("wrote to a read-only mount")
	}
	return string(b) + " " + os.Getenv("GREETING"), nil
})

// The host's imports, called directly with garbage.

//go:wasmimport rayhost call
func rawCall(op uint32, ptr uint32, n uint32) int64

//go:wasmimport rayhost recv
func rawRecv(ptr uint32, n uint32) uint32

// garbage calls every host function with pointers and lengths outside the
// guest's memory, unknown ops and random bytes, and returns what each call
// returned. None may crash the host or copy memory.
var _ = ray.Func0("garbage_pointers", func(ctx context.Context) ([]int64, error) {
	var results []int64
	bad := []struct{ ptr, n uint32 }{{0xFFFFFFF0, 64}, {0xFFFFFFFF, 1}, {0, 0xFFFFFFFF}, {1 << 31, 1 << 31}}
	for op := uint32(0); op <= 12; op++ {
		for _, b := range bad {
			results = append(results, rawCall(op, b.ptr, b.n))
		}
		junk := []byte("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff garbage")
		results = append(results, rawCall(op, uint32(uintptr(unsafe.Pointer(&junk[0]))), uint32(len(junk))))
	}
	for _, b := range bad {
		results = append(results, int64(rawRecv(b.ptr, b.n)))
	}
	return results, nil
})

var ok = ray.Func0("ok2", func(ctx context.Context) (string, error) { return "ok", ray.Sleep(ctx, 10e6) })

// fanOut submits n tasks that wait, without nesting: only the tree's cap
// stops it. It returns the first error.
var _ = ray.Func1("fan_out", func(ctx context.Context, n int) (int, error) {
	refs := make([]ray.ObjectRef[string], n)
	for i := range refs {
		refs[i] = ok.Remote()
	}
	_, err := ray.GetAll(ctx, refs)
	for _, r := range refs {
		_ = ray.Cancel(r, true, true)
	}
	return 0, err
})

// bomb nests n deep, each level waiting for the next: the nesting bomb.
var bomb *ray.Function[int]

// chain nests n deep without waiting: only the depth limit stops it.
var chain *ray.Function[int]

func init() {
	bomb = ray.Func1("bomb", func(ctx context.Context, n int) (int, error) {
		if n == 0 {
			return 0, nil
		}
		v, err := ray.Get(ctx, bomb.Remote(n-1))
		return v + 1, err
	})
	chain = ray.Func1("chain", func(ctx context.Context, n int) (int, error) {
		if n > 0 {
			chain.Remote(n - 1)
		}
		return n, nil
	})
}

func main() {}
