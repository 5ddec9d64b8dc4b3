package owner

import (
	"fmt"
	"testing"

	"connectrpc.com/connect"

	"github.com/rayhost/rayhost/host/internal/edge"
)

// A submission refused by a limit is resource_exhausted at the edge (the
// exported sentinels are checked in package host, which re-exports them).
func TestLimitCode(t *testing.T) {
	if got := edge.CodeOf(fmt.Errorf("wrapped: %w", errLimit)); got != connect.CodeResourceExhausted {
		t.Errorf("errLimit: code %v, want %v", got, connect.CodeResourceExhausted)
	}
}
