//go:build !wasip1

package ray

import "github.com/rayhost/rayhost/internal/abi"

// Outside a wasip1 guest there is no host: the package compiles (for docs,
// vet and native unit tests of user code) and every call reports
// ErrNotInGuest.
func hostCall(abi.Op, []byte) ([]byte, error) { return nil, ErrNotInGuest }
