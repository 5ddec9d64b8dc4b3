//go:build wasip1

package ray

import (
	"errors"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/rayhost/rayhost/internal/abi"
)

// putDataMin: a put of at least this many bytes names its bytes where they
// are (op put_data) instead of copying them into its request.
const putDataMin = 64 << 10

// noPutData: the host answered put_data with UnknownOp (it predates it);
// puts then go as op put.
var noPutData atomic.Bool

// putValue sends a put. A large value's bytes are read by the worker
// where they are in this module's memory (op put_data, ABI.md §5), so
// they are not copied into a request first; a host that predates
// put_data gets op put.
func putValue(req abi.PutRequest) error {
	if d := req.Value.Data; len(d) >= putDataMin && !noPutData.Load() {
		pd := abi.PutDataRequest{ID: req.ID, Codec: req.Value.Codec,
			Ptr: uint32(uintptr(unsafe.Pointer(unsafe.SliceData(d)))), Len: uint32(len(d))}
		_, err := hostCall(abi.OpPutData, pd.Encode(nil))
		runtime.KeepAlive(d) // the worker read it during the call
		var oe opError
		if !errors.As(err, &oe) || oe.code != abi.ErrCodeUnknownOp {
			return err
		}
		noPutData.Store(true)
	}
	_, err := hostCall(abi.OpPut, req.Encode(nil))
	return err
}
