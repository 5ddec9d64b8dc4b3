package modules

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
)

// TestDecodeDescriptionCounts: a variadic function (num_args −1, ABI.md)
// is a description like any other; a count below that is refused (found
// when examples/antipatterns, which has one, failed to register).
func TestDecodeDescriptionCounts(t *testing.T) {
	for _, tc := range []struct {
		f  abi.FunctionInfo
		ok bool
	}{
		{abi.FunctionInfo{Name: "sum", NumArgs: -1, NumReturns: 1}, true},
		{abi.FunctionInfo{Name: "none", NumArgs: 0, NumReturns: 0}, true},
		{abi.FunctionInfo{Name: "bad_args", NumArgs: -2, NumReturns: 1}, false},
		{abi.FunctionInfo{Name: "bad_returns", NumArgs: 1, NumReturns: -1}, false},
	} {
		b, _ := json.Marshal(abi.Description{ABI: 1, Functions: []abi.FunctionInfo{tc.f}})
		_, err := decodeDescription(b)
		if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrInvalidModule) {
			t.Errorf("%s (num_args %d, num_returns %d): %v, want ok %v", tc.f.Name, tc.f.NumArgs, tc.f.NumReturns, err, tc.ok)
		}
	}
}
