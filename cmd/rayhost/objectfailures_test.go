package main

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/internal/testutil"
)

// TestClusterObjectFailures: what hosts answer about objects whose owner
// or holder died is a documented kind, the same through every host and
// across restarts, and it heals when the host is back. b is killed with -9
// and later restarted on its data dir and addresses; a is restarted while
// b is down, and again after. The objects:
//   - put: a Put owned by b: owner_died while b is down, then its value;
//   - held: a value a owns whose bytes are on b (a Put by a task a placed
//     on b): object_lost while b is down, then its value;
//   - unfinished: a task b had not finished when it died: owner_died, for
//     good, and from b itself once it is back.
func TestClusterObjectFailures(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	// b's objects must be on its disk when it is killed: large objects are
	// written at once here (behind their seal), and the test waits for the
	// writes (waitPersisted). By default one waits a second in memory (one
	// freed sooner never reaches the disk), and a host killed with -9
	// within that second loses it, as a Ray node's objects die with it.
	hosts := testutil.StartProcCluster(t, 3, testutil.ProcOptions{Args: []string{"--object-persist-after", "0"}})
	a, b, c := hosts[0], hosts[1], hosts[2]
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range hosts {
				t.Logf("%s's log:\n%s", h.ID, h.Log())
			}
		}
	})
	mod := testutil.Register(t, a.Client, guestPkg)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	const n = 200 << 10 // over the inline limit: written behind at once (above)
	value := testutil.MadeBytes(n)
	put, err := b.Client.Put(ctx, value)
	if err != nil {
		t.Fatal(err)
	}
	var held client.ObjectRef
	if err := a.Client.Get(ctx, submitCall(t, a.Client, client.Call{Module: mod, Function: "put_bytes", Args: []any{n},
		Scheduling: client.Scheduling{NodeID: b.ID}}), &held); err != nil {
		t.Fatal(err)
	}
	unfinished := submitCall(t, b.Client, client.Call{Module: mod, Function: "sleep", Args: []any{3_600_000},
		Scheduling: client.Scheduling{NodeID: b.ID}})
	refs := []client.ObjectRef{put, held, unfinished}

	waitPersisted(t, b)
	b.Kill()
	waitState(t, a.Client, b.ID, "failed")
	waitState(t, c.Client, b.ID, "failed")
	down := []error{client.ErrOwnerDied, client.ErrObjectLost, client.ErrOwnerDied}
	expectAnswers(t, ctx, "b down", []*testutil.ProcHost{a, c}, refs, down, value)

	a.Kill()
	waitState(t, c.Client, a.ID, "failed")
	a.RestartInPlace()
	waitState(t, c.Client, a.ID, "alive")
	waitState(t, a.Client, c.ID, "alive")
	expectAnswers(t, ctx, "b down, a restarted", []*testutil.ProcHost{a, c}, refs, down, value)

	b.RestartInPlace()
	for _, x := range []*testutil.ProcHost{a, b, c} {
		for _, y := range []*testutil.ProcHost{a, b, c} {
			if x != y {
				waitState(t, x.Client, y.ID, "alive")
			}
		}
	}
	back := []error{nil, nil, client.ErrOwnerDied}
	expectAnswers(t, ctx, "b back", hosts, refs, back, value)

	a.Kill()
	waitState(t, b.Client, a.ID, "failed")
	a.RestartInPlace()
	waitState(t, a.Client, b.ID, "alive")
	expectAnswers(t, ctx, "b back, a restarted", []*testutil.ProcHost{a}, refs, back, value)
}

// expectAnswers gets every ref through every host of via at once: want[i]
// is the error ref i fails with (nil: its value is value).
func expectAnswers(t *testing.T, ctx context.Context, when string, via []*testutil.ProcHost, refs []client.ObjectRef, want []error, value []byte) {
	t.Helper()
	start := time.Now()
	var wg sync.WaitGroup
	for _, h := range via {
		for i, ref := range refs {
			wg.Go(func() {
				var got []byte
				err := h.Client.Get(ctx, ref, &got)
				switch {
				case want[i] == nil && (err != nil || !bytes.Equal(got, value)):
					t.Errorf("%s: object %d through %s: %d bytes, %v; want its value", when, i, h.ID, len(got), err)
				case want[i] != nil && !errors.Is(err, want[i]):
					t.Errorf("%s: object %d through %s: %v; want %v", when, i, h.ID, err, want[i])
				}
			})
		}
	}
	wg.Wait()
	t.Logf("%s: answers in %v", when, time.Since(start).Round(time.Millisecond))
}

// waitPersisted waits until h has written every value it holds to its
// store (its write-behind is empty), so that a kill loses none.
func waitPersisted(t *testing.T, h *testutil.ProcHost) {
	t.Helper()
	deadline := time.Now().Add(testutil.HangGuard)
	for {
		m, err := h.Client.Memory(context.Background(), 1)
		if err == nil && m.Summary.Unpersisted == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has not written its values after %v: %+v, %v", h.ID, testutil.HangGuard, m, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
