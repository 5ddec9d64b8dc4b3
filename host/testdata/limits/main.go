// Command limits is a guest for host/limits*_test.go: tasks that ask for
// more than the host's maximums, fill its object store, and a driver that
// holds a worker until it is cancelled.
package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

// alloc_mib allocates n MiB, touches every page and returns n.
var allocMiB = ray.Func1("alloc_mib", func(ctx context.Context, n int) (int, error) {
	b := make([]byte, n<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	return len(b) >> 20, nil
})

// capped_child submits alloc_mib(allocMiB) with a memory limit of memMiB
// and a timeout of timeoutS seconds, and returns what it returned.
var _ = ray.Func3("capped_child", func(ctx context.Context, memMiB, timeoutS, alloc int) (int, error) {
	return ray.Get(ctx, allocMiB.Options(ray.MemoryLimit(int64(memMiB)<<20), ray.Timeout(time.Duration(timeoutS)*time.Second)).Remote(alloc))
})

// put_mib puts n MiB in one object and gets it back: the length, or the
// error the host sealed into the object.
var _ = ray.Func1("put_mib", func(ctx context.Context, n int) (int, error) {
	b, err := ray.Get(ctx, ray.Put(make([]byte, n<<20)))
	return len(b), err
})

// put_many puts count objects of kib KiB, getting each back and holding
// every ref (a ref dropped is released, and its object freed: the store
// would never fill); it returns how many it stored before the first error.
var _ = ray.Func2("put_many", func(ctx context.Context, count, kib int) (int, error) {
	held := make([]ray.ObjectRef[[]byte], 0, min(count, 1<<16))
	for i := range count {
		r := ray.Put(make([]byte, kib<<10))
		if _, err := ray.Get(ctx, r); err != nil {
			return i, err
		}
		held = append(held, r)
	}
	runtime.KeepAlive(held)
	return count, nil
})

// Held is what hold_until_full did.
type Held struct {
	Held    int    `json:"held"`     // values stored and held
	Err     string `json:"err"`      // the error of the Put that did not fit
	Kind    string `json:"kind"`     // its kind
	ReadOK  bool   `json:"read_ok"`  // every held value read back afterwards
	TaskErr string `json:"task_err"` // a task run afterwards: its error, or ""
}

// hold_until_full puts values of n MiB, holding every ref, until a Put
// fails (at most max); it then reads every held value back and runs a
// small task, and returns. Its refs are released when it ends.
var _ = ray.Func2("hold_until_full", func(ctx context.Context, n, max int) (Held, error) {
	var h Held
	var held []ray.ObjectRef[[]byte]
	val := make([]byte, n<<20)
	for len(held) < max {
		r := ray.Put(val)
		if _, err := ray.Get(ctx, r); err != nil {
			h.Err = err.Error()
			var te *ray.TaskError
			if errors.As(err, &te) {
				h.Kind = te.Kind
			}
			break
		}
		held = append(held, r)
	}
	h.Held = len(held)
	h.ReadOK = true
	for _, r := range held {
		if b, err := ray.Get(ctx, r); err != nil || len(b) != len(val) {
			h.ReadOK = false
		}
	}
	if _, err := ray.Get(ctx, allocMiB.Remote(0)); err != nil {
		h.TaskErr = err.Error()
	}
	return h, nil
})

// result_mib returns n MiB as its result.
var _ = ray.Func1("result_mib", func(ctx context.Context, n int) ([]byte, error) {
	return make([]byte, n<<20), nil
})

// block waits until it is cancelled.
var _ = ray.Func0("block", func(ctx context.Context) (int, error) {
	return 0, ray.Sleep(ctx, time.Hour)
})

// A driver that says it started, then waits until it is cancelled.
func init() {
	ray.Main(func(ctx context.Context) error {
		fmt.Println("driver started")
		return ray.Sleep(ctx, time.Hour)
	})
}

func main() {}
