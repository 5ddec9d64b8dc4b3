package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/testutil"
	"github.com/rayhost/rayhost/store"
)

// TestClusterBorrows: refs another host borrows stay alive while it holds
// them, and once nobody does, no host keeps them. A driver task on a puts
// values through tasks that hand the refs to an actor on b and end (the
// put's maker, the tasks that passed them: all gone, and the driver never
// held them); the actor then reads them, and a task it submits on b reads
// them; the driver kills the actor. Before borrows were counted, those
// reads were object_freed. Afterwards `rayhost memory` on every host lists
// none of the values, and b's store no longer has their bytes.
func TestClusterBorrows(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	hosts := testutil.StartProcCluster(t, 3, testutil.ProcOptions{})
	a, b := hosts[0], hosts[1]
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range hosts {
				t.Logf("%s's log:\n%s", h.ID, h.Log())
			}
		}
	})
	mod := testutil.Register(t, a.Client, guestPkg)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	const n = 4
	var out []any
	if err := a.Client.Get(ctx, submitCall(t, a.Client, client.Call{Module: mod, Function: "borrowed_on", Args: []any{b.ID, n}}), &out); err != nil {
		t.Fatal(err)
	}
	if len(out) != 3 || out[0] != float64(10) || out[1] != float64(10) {
		t.Fatalf("borrowed_on = %v, want both sums 10", out)
	}
	raw, _ := out[2].([]any)
	var objs []ids.ObjectID
	for _, x := range raw {
		s, _ := x.(string)
		id, err := ids.ParseObjectID(s)
		if err != nil {
			t.Fatalf("stash id %v: %v", x, err)
		}
		objs = append(objs, id)
	}
	if len(objs) != n {
		t.Fatalf("%d stashed ids, want %d", len(objs), n)
	}

	// Once the actor is gone, b releases its borrows, a frees the values
	// and b deletes its copies: no host lists them.
	deadline := time.Now().Add(testutil.HangGuard)
	for _, h := range hosts {
		for {
			code, stdout, stderr := runCLI(t, "memory", "--json", "--address", h.Addr)
			if code != 0 {
				t.Fatalf("rayhost memory on %s exited %d: %s", h.ID, code, stderr)
			}
			var listed []string
			for _, id := range objs {
				if strings.Contains(stdout, id.String()) {
					listed = append(listed, id.String())
				}
			}
			if len(listed) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("rayhost memory on %s still lists %v:\n%s", h.ID, listed, stdout)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, id := range objs {
		var v int
		if err := a.Client.Get(ctx, client.ObjectRef{ID: id.String(), Owner: a.Addr}, &v); !errors.Is(err, client.ErrObjectFreed) {
			t.Fatalf("a freed value reads %d, %v; want ErrObjectFreed", v, err)
		}
	}

	// b's copies went from its store (the deletes are queued behind the
	// free: stopping b waits for them).
	waitStoreLacks(t, b, objs)
}

// waitStoreLacks stops h and checks that its object store holds none of
// objs.
func waitStoreLacks(t *testing.T, h *testutil.ProcHost, objs []ids.ObjectID) {
	t.Helper()
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	cfg := store.DefaultBadgerConfig(filepath.Join(h.DataDir, "objects"))
	st, err := store.OpenBadger(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, id := range objs {
		if _, err := st.Stat(context.Background(), id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s's store still has %s: %v", h.ID, id, err)
		}
	}
}
