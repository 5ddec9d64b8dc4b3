package host_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/testutil"
)

// TestGetEndsWithShutdown: a client blocked in Get on a host that shuts
// down is told the host is shutting down (ErrHostShuttingDown, one kind
// of ErrUnavailable), not that something was cancelled.
func TestGetEndsWithShutdown(t *testing.T) {
	var read atomic.Int64
	h := testutil.StartHost(t, func(cfg *host.Config) { host.CountBodyBytes(cfg, &read) })
	c := client.New(h.Addr())
	mod := testutil.Register(t, c, guestPkg)
	ctx, cancel := context.WithTimeout(t.Context(), testutil.HangGuard)
	defer cancel()
	ref, err := c.Submit(ctx, mod, "sleep", 3_600_000)
	if err != nil {
		t.Fatal(err)
	}
	before := read.Load()
	got := make(chan error, 1)
	go func() { got <- c.Get(ctx, ref, new(int)) }()
	// Once the host has read the Get's request, the Get is its call: it
	// waits for the task or ends with the host.
	deadline := time.Now().Add(testutil.HangGuard)
	for read.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("the host never read the Get")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	err = <-got
	if !errors.Is(err, client.ErrHostShuttingDown) || !errors.Is(err, client.ErrUnavailable) || errors.Is(err, client.ErrTaskCancelled) {
		t.Fatalf("a Get the host's shutdown ended: %v; want ErrHostShuttingDown (and ErrUnavailable), not ErrTaskCancelled", err)
	}
	t.Logf("the Get ended with: %v", err)
}
