//go:build wasip1

package ray

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/rayhost/rayhost/internal/abi"
)

// The two host functions of ABI v1 (see guest-sdk/ABI.md).

//go:wasmimport rayhost call
func rayhostCall(op uint32, ptr unsafe.Pointer, n uint32) int64

//go:wasmimport rayhost recv
func rayhostRecv(ptr unsafe.Pointer, n uint32) uint32

// callMu keeps a call and the recv of its reply together when the function
// runs goroutines: the mailbox holds one reply at a time.
var callMu sync.Mutex

func hostCall(op abi.Op, req []byte) ([]byte, error) {
	if op != abi.OpRelease {
		// A host call is a yield point, as a system call is natively:
		// wasip1 has one thread and no preemption, so a guest looping over
		// host calls would otherwise never run the runtime's own
		// goroutines — the cleanups that release dropped refs, and the
		// garbage collector's workers.
		runtime.Gosched()
		flushReleases(false)
	}
	if c := concCallOf(currentTask()); c != nil && op != abi.OpResult {
		// A call of a concurrent actor's instance (concurrent_wasip1.go).
		if b, err, ok := c.do(op, req); ok {
			return b, err
		}
	}
	return directCall(op, req)
}

// directCall makes one host call and receives its reply.
func directCall(op abi.Op, req []byte) ([]byte, error) {
	n, buf := rawCall(op, req)
	if n < 0 {
		return nil, codeError(abi.ErrCode(n))
	}
	if int64(len(buf)) != n {
		return nil, fmt.Errorf("%w: received %d of %d reply bytes", ErrHost, len(buf), n)
	}
	if n == 0 {
		return nil, nil
	}
	return buf, nil
}

// rawCall makes one host call: its result, and the reply it announced
// (copied short if recv copied less).
func rawCall(op abi.Op, req []byte) (int64, []byte) {
	callMu.Lock()
	defer callMu.Unlock()
	n := rayhostCall(uint32(op), unsafe.Pointer(unsafe.SliceData(req)), uint32(len(req)))
	if n <= 0 {
		return n, nil
	}
	buf := make([]byte, n)
	got := rayhostRecv(unsafe.Pointer(unsafe.SliceData(buf)), uint32(n))
	return n, buf[:got]
}

//go:wasmexport rayhost_abi_version
func rayhostABIVersion() int32 { return abi.Version }

//go:wasmexport rayhost_invoke
func rayhostInvoke(n int32) int32 {
	buf := make([]byte, n)
	if n > 0 && rayhostRecv(unsafe.Pointer(unsafe.SliceData(buf)), uint32(n)) != uint32(n) {
		buf = nil // invoke reports the truncated input as a bad request
	}
	return int32(invoke(buf))
}
