package host_test

import (
	"strings"
	"testing"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/testutil"
)

// TestGrantsOutliveTheRing: a flood of other tasks' events pushes a granted
// task's early events out of the ring, but every event of the task carries
// its grants, so what is left of it still says what it was granted.
func TestGrantsOutliveTheRing(t *testing.T) {
	allowed := t.TempDir()
	const ring = 16
	h := testutil.StartHost(t, func(c *host.Config) { c.AllowedDirs = []string{allowed}; c.MaxTaskEvents = ring })
	c := client.New(h.Addr())
	mod := testutil.Register(t, c, guestPkg)
	ctx := ctxFor(t, testutil.HangGuard)

	refs, err := c.SubmitCall(ctx, client.Call{Module: mod, Function: "sleep", Args: []any{tenMinutes},
		Mounts: []client.Mount{{HostPath: allowed, GuestPath: "/data", ReadOnly: true}}, Env: map[string]string{"SECRET_NAME": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	granted := refs[0].ID[:32]
	runningWorker(t, c, refs[0])
	// The flood: each task leaves five events.
	for range ring {
		var v int
		mustCall(t, c, mod, "add", &v, 1, 2)
	}
	evs, dropped, err := c.ListTasks(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.TaskID == granted {
			t.Fatalf("the granted task's events were not pushed out (%d dropped): the test floods too little", dropped)
		}
	}
	if err := c.Cancel(ctx, refs[0], true, false); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, refs[0], new(int)); err == nil {
		t.Fatal("a cancelled task returned")
	}
	evs, err = c.TaskEvents(ctx, granted)
	if err != nil || len(evs) == 0 {
		t.Fatalf("the granted task's last event: %v, %v", evs, err)
	}
	want := "dir " + allowed + " at /data (ro); env SECRET_NAME;"
	for _, e := range evs {
		if !strings.Contains(e.Grants, want) {
			t.Fatalf("event %s of the granted task has grants %q, want %q", e.State, e.Grants, want)
		}
	}
}
