package owner

import (
	"fmt"
	"testing"

	"connectrpc.com/connect"

	"github.com/rayhost/rayhost/host/internal/edge"
	"github.com/rayhost/rayhost/internal/abi"
)

// A submission refused by a limit is resource_exhausted at the edge (the
// exported sentinels are checked in package host, which re-exports them).
func TestLimitCode(t *testing.T) {
	if got := edge.CodeOf(fmt.Errorf("wrapped: %w", errLimit)); got != connect.CodeResourceExhausted {
		t.Errorf("errLimit: code %v, want %v", got, connect.CodeResourceExhausted)
	}
}

// A method runs in its actor's instance, made with the creation's memory
// limit: that is the limit its out-of-memory message names (it said the
// host's default, 1024 MiB, for an actor made with 64 MiB).
func TestActorCallMemoryLimit(t *testing.T) {
	h := &Owner{cfg: testConfig(t.TempDir())}
	h.roles()
	create := &task{limits: abi.Limits{MemoryPages: (64 << 20) >> 16}}
	call := &task{kind: abi.KindActorCall, actor: &actor{create: create}}
	if got := h.disp.memoryLimitOf(call); got != 64<<20 {
		t.Fatalf("memoryLimitOf(method call) = %d MiB, want 64", got>>20)
	}
	if got := h.disp.memoryLimitOf(&task{}); got != h.cfg.TaskMemoryLimit {
		t.Fatalf("memoryLimitOf(task) = %d, want the default %d", got, h.cfg.TaskMemoryLimit)
	}
}
