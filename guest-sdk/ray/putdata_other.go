//go:build !wasip1

package ray

import "github.com/rayhost/rayhost/internal/abi"

// putValue sends a put to the local host (which has no guest memory to
// read bytes from: always op put).
func putValue(req abi.PutRequest) error {
	_, err := hostCall(abi.OpPut, req.Encode(nil))
	return err
}
