package host

import (
	"fmt"
	"testing"

	"connectrpc.com/connect"

	"github.com/rayhost/rayhost/host/internal/edge"
)

// Each sentinel of the host belongs to an API class (internal/kinds), so
// the edge gives it its Connect code. A sentinel declared with errors.New
// (or moved to a package that does) would become an internal error.
func TestSentinelCodes(t *testing.T) {
	for _, c := range []struct {
		err  error
		want connect.Code
	}{
		{ErrModuleNotFound, connect.CodeNotFound},
		{ErrFunctionNotFound, connect.CodeNotFound},
		{ErrObjectNotFound, connect.CodeNotFound},
		{ErrTaskNotFound, connect.CodeNotFound},
		{ErrInvalidModule, connect.CodeInvalidArgument},
		{ErrInvalidArgument, connect.CodeInvalidArgument},
		{ErrGetTimeout, connect.CodeDeadlineExceeded},
		{ErrPermissionDenied, connect.CodePermissionDenied},
		{ErrForgedID, connect.CodePermissionDenied},
		{ErrClosed, connect.CodeUnavailable},
		{ErrModuleExists, connect.CodeAlreadyExists},
		// Task failures, not API classes: internal when a call fails with
		// one (a Get turns them into a TaskError of their kind).
		{ErrObjectLost, connect.CodeInternal},
		{ErrOwnerDied, connect.CodeInternal},
	} {
		if got := edge.CodeOf(fmt.Errorf("wrapped: %w", c.err)); got != c.want {
			t.Errorf("%v: code %v, want %v", c.err, got, c.want)
		}
	}
}
