package gossip

import (
	"context"
	"testing"
	"time"
)

func TestMemoryFailHeal(t *testing.T) {
	t.Parallel()
	c := memCluster{NewMemoryNetwork()}
	ms := startJoined(t, c, "a", "b", "c")
	a, b, cm := ms[0], ms[1], ms[2]

	if err := c.net.Fail("c"); err != nil {
		t.Fatal(err)
	}
	for _, m := range []Membership{a, b} {
		waitEvent(t, m, EventFailed, "c")
		eventually(t, waitFor, sees(m, with(cm.Local(), StatusFailed)))
	}
	// Cut off, c sees the others fail, and cannot join anyone.
	waitEvent(t, cm, EventFailed, "a")
	eventually(t, waitFor, sees(cm, with(a.Local(), StatusFailed)))

	if err := c.net.Heal("c"); err != nil {
		t.Fatal(err)
	}
	for _, m := range []Membership{a, b} {
		waitEvent(t, m, EventJoin, "c")
		eventually(t, waitFor, sees(m, cm.Local()))
	}
	waitEvent(t, cm, EventJoin, "b")
	eventually(t, waitFor, sees(cm, a.Local()))
	eventually(t, waitFor, sees(cm, b.Local()))

	if err := c.net.Fail("nobody"); err == nil {
		t.Error("Fail of an unknown name succeeded")
	}
}

// TestMemoryPartitionedJoin checks that a member cut off by Fail cannot
// join, like a partitioned Serf member.
func TestMemoryPartitionedJoin(t *testing.T) {
	t.Parallel()
	c := memCluster{NewMemoryNetwork()}
	a := mustStart(t, c, c.config(t, "a"))
	b := mustStart(t, c, c.config(t, "b"))
	if err := c.net.Fail("a"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := b.Join(ctx, []string{a.Local().GossipAddr}); err == nil {
		t.Fatal("joined a failed member")
	}
	if err := c.net.Heal("a"); err != nil {
		t.Fatal(err)
	}
	join(t, b, a)
	eventually(t, waitFor, sees(a, b.Local()))
}
