package host_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/guest-sdk/ray"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/testutil"
)

func byteSum(b []byte) []int64 {
	var s int64
	for _, x := range b {
		s += int64(x)
	}
	return []int64{int64(len(b)), s}
}

// hostsOf returns, for each task, the hosts its running events name.
func hostsOf(t *testing.T, c *client.Client) map[string][]string {
	t.Helper()
	evs, _, err := c.ListTasks(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, ev := range evs {
		if ev.State == "running" {
			out[ev.TaskID] = append(out[ev.TaskID], ev.Host)
		}
	}
	return out
}

func submitOn(t *testing.T, c *client.Client, call client.Call) client.ObjectRef {
	t.Helper()
	refs, err := c.SubmitCall(ctxFor(t, testutil.HangGuard), call)
	if err != nil {
		t.Fatalf("submit %s: %v", call.Function, err)
	}
	return refs[0]
}

func TestCluster(t *testing.T) {
	hosts := testutil.StartCluster(t, 3, func(i int, cfg *host.Config) {
		if i == 2 {
			cfg.Resources = map[string]float64{"disk": 1}
		}
	})
	cs := make([]*client.Client, len(hosts))
	for i, h := range hosts {
		cs[i] = client.New(h.Addr())
	}
	// Registered on the first host only: the others fetch it by digest.
	mod := testutil.Register(t, cs[0], guestPkg)

	t.Run("tasks_spread", func(t *testing.T) {
		calls := make([]client.Call, 60)
		for i := range calls {
			calls[i] = client.Call{Module: mod, Function: "work", Args: []any{50}}
		}
		ctx := ctxFor(t, testutil.HangGuard)
		refs, err := cs[0].SubmitBatch(ctx, calls)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range refs {
			var v int
			if err := cs[0].Get(ctx, r[0], &v); err != nil || v != 100 {
				t.Fatalf("work = %d, %v", v, err)
			}
		}
		seen := map[string]int{}
		for _, r := range refs {
			for _, h := range hostsOf(t, cs[0])[r[0].ID[:32]] {
				seen[h]++
			}
		}
		if len(seen) != 3 {
			t.Fatalf("tasks ran on %v, want all 3 hosts", seen)
		}
		t.Logf("60 tasks of 50 ms ran on %v", seen)
	})

	t.Run("objects_move", func(t *testing.T) {
		const n = 4 << 20
		made := submitOn(t, cs[0], client.Call{Module: mod, Function: "make_bytes", Args: []any{n},
			Scheduling: client.Scheduling{NodeID: hosts[1].ID()}})
		sum := submitOn(t, cs[0], client.Call{Module: mod, Function: "byte_sum", Args: []any{made},
			Scheduling: client.Scheduling{NodeID: hosts[2].ID()}})
		var got []int64
		if err := cs[0].Get(ctxFor(t, testutil.HangGuard), sum, &got); err != nil {
			t.Fatal(err)
		}
		if want := byteSum(testutil.MadeBytes(n)); got[0] != want[0] || got[1] != want[1] {
			t.Fatalf("byte_sum on host 2 of bytes made on host 1 = %v, want %v", got, want)
		}
		where := hostsOf(t, cs[0])
		if h := where[made.ID[:32]]; len(h) != 1 || h[0] != hosts[1].ID() {
			t.Errorf("make_bytes ran on %v, want %s", h, hosts[1].ID())
		}
		if h := where[sum.ID[:32]]; len(h) != 1 || h[0] != hosts[2].ID() {
			t.Errorf("byte_sum ran on %v, want %s", h, hosts[2].ID())
		}
		// Any host's client gets any ref: host 2 borrows it from host 0,
		// which says host 1 (or 2) holds it.
		var buf bytes.Buffer
		if _, err := cs[2].GetStream(ctxFor(t, testutil.HangGuard), made, &buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), testutil.MadeBytes(n)) {
			t.Fatalf("GetStream through host 2: %d bytes, not what make_bytes made", buf.Len())
		}
		var small int
		if err := cs[1].Get(ctxFor(t, testutil.HangGuard), submitOn(t, cs[0], client.Call{Module: mod, Function: "add", Args: []any{2, 3}}), &small); err != nil || small != 5 {
			t.Fatalf("Get through host 1 = %d, %v", small, err)
		}
	})

	t.Run("args_fetched_before_the_task_takes_a_worker", func(t *testing.T) {
		// Made on host 1, used by a task pinned to host 0 (its owner): the
		// task gives back its worker while the bytes travel, then runs.
		const n = 2 << 20
		made := submitOn(t, cs[0], client.Call{Module: mod, Function: "make_bytes", Args: []any{n},
			Scheduling: client.Scheduling{NodeID: hosts[1].ID()}})
		sum := submitOn(t, cs[0], client.Call{Module: mod, Function: "byte_sum", Args: []any{made},
			Scheduling: client.Scheduling{NodeID: hosts[0].ID()}})
		var got []int64
		if err := cs[0].Get(ctxFor(t, testutil.HangGuard), sum, &got); err != nil {
			t.Fatal(err)
		}
		if want := byteSum(testutil.MadeBytes(n)); got[1] != want[1] {
			t.Fatalf("byte_sum = %v, want %v", got, want)
		}
		evs, _, _ := cs[0].ListTasks(context.Background(), "")
		var states []string
		for _, ev := range evs {
			if ev.TaskID == sum.ID[:32] {
				states = append(states, ev.State+" "+ev.Message)
			}
		}
		if !slices.ContainsFunc(states, func(s string) bool { return strings.HasPrefix(s, "pending_args fetching its arguments") }) {
			t.Errorf("byte_sum's events %q show no fetch of its argument", states)
		}
	})

	t.Run("only_members_are_contacted", func(t *testing.T) {
		// An ObjectRef naming an owner outside the cluster must not make a
		// host connect there: it counts as an owner that died.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var dials atomic.Int32
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				dials.Add(1)
				conn.Close()
			}
		}()
		ref := client.ObjectRef{ID: strings.Repeat("ab", 16) + "00000001", Owner: ln.Addr().String()}
		var v any
		err = cs[1].Get(ctxFor(t, testutil.HangGuard), ref, &v)
		if !errors.Is(err, client.ErrOwnerDied) {
			t.Fatalf("Get of a ref owned outside the cluster: %v, want ErrOwnerDied", err)
		}
		sum := submitOn(t, cs[1], client.Call{Module: mod, Function: "byte_sum", Args: []any{ref}})
		if err := cs[1].Get(ctxFor(t, testutil.HangGuard), sum, &v); !errors.Is(err, client.ErrOwnerDied) {
			t.Fatalf("a task with such an argument: %v, want ErrOwnerDied", err)
		}
		if n := dials.Load(); n != 0 {
			t.Fatalf("the host connected %d times to an address no member has", n)
		}
	})

	t.Run("put_on_one_host_used_on_another", func(t *testing.T) {
		ref, err := cs[1].Put(ctxFor(t, testutil.HangGuard), testutil.MadeBytes(1<<20))
		if err != nil {
			t.Fatal(err)
		}
		sum := submitOn(t, cs[0], client.Call{Module: mod, Function: "byte_sum", Args: []any{ref},
			Scheduling: client.Scheduling{NodeID: hosts[2].ID()}})
		var got []int64
		if err := cs[0].Get(ctxFor(t, testutil.HangGuard), sum, &got); err != nil {
			t.Fatal(err)
		}
		if want := byteSum(testutil.MadeBytes(1 << 20)); got[1] != want[1] {
			t.Fatalf("byte_sum = %v, want %v", got, want)
		}
	})

	t.Run("strategies", func(t *testing.T) {
		// A custom resource only host 2 has routes there.
		disk := submitOn(t, cs[0], client.Call{Module: mod, Function: "work", Args: []any{1}, Resources: map[string]float64{"disk": 1}})
		// Spread.
		var spread []client.ObjectRef
		for range 6 {
			spread = append(spread, submitOn(t, cs[0], client.Call{Module: mod, Function: "work", Args: []any{100},
				Scheduling: client.Scheduling{Spread: true}}))
		}
		// Soft affinity to a host that does not exist runs anyway.
		soft := submitOn(t, cs[0], client.Call{Module: mod, Function: "work", Args: []any{1},
			Scheduling: client.Scheduling{NodeID: "no-such-host", Soft: true}})
		ctx := ctxFor(t, testutil.HangGuard)
		for _, r := range append(append(spread, disk), soft) {
			var v int
			if err := cs[0].Get(ctx, r, &v); err != nil {
				t.Fatal(err)
			}
		}
		where := hostsOf(t, cs[0])
		if h := where[disk.ID[:32]]; len(h) != 1 || h[0] != hosts[2].ID() {
			t.Errorf("a task needing disk ran on %v, want %s", h, hosts[2].ID())
		}
		seen := map[string]bool{}
		for _, r := range spread {
			for _, h := range where[r.ID[:32]] {
				seen[h] = true
			}
		}
		if len(seen) != 3 {
			t.Errorf("spread tasks ran on %v, want all 3 hosts", seen)
		}
		// The same strategies from inside a task.
		var total int
		parent := submitOn(t, cs[0], client.Call{Module: mod, Function: "spread_children", Args: []any{6}})
		if err := cs[0].Get(ctx, parent, &total); err != nil || total != 600 {
			t.Fatalf("spread_children = %d, %v", total, err)
		}
		pinned := submitOn(t, cs[0], client.Call{Module: mod, Function: "pinned_child", Args: []any{hosts[1].ID()}})
		if err := cs[0].Get(ctx, pinned, &total); err != nil || total != 1 {
			t.Fatalf("pinned_child = %d, %v", total, err)
		}
		// A task on a peer Gets large values (served there: the
		// executor pulls them), which reach its guest as a head and a
		// body.
		const n = 3<<20 + 5
		var want int64
		for i := range n {
			want += int64(byte(i * 7))
		}
		var sums []int64
		big := submitOn(t, cs[0], client.Call{Module: mod, Function: "pinned_big_sum", Args: []any{hosts[1].ID(), n}})
		if err := cs[0].Get(ctx, big, &sums); err != nil || len(sums) != 4 || sums[0] != n || sums[1] != want || sums[2] != n || sums[3] != want {
			t.Fatalf("pinned_big_sum = %v, %v; want [%d %d %d %d]", sums, err, n, want, n, want)
		}
		evs, _, err := cs[0].ListTasks(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		children := map[string]bool{}
		for _, ev := range evs {
			if ev.State == "running" && ev.Function == "get_big_sum" && ev.ParentTaskID == big.ID[:32] && ev.Host != hosts[1].ID() {
				t.Errorf("get_big_sum pinned to %s ran on %s", hosts[1].ID(), ev.Host)
			}
			if ev.State == "running" && ev.Function == "work2" {
				if ev.ParentTaskID == pinned.ID[:32] && ev.Host != hosts[1].ID() {
					t.Errorf("a child pinned to %s ran on %s", hosts[1].ID(), ev.Host)
				}
				if ev.ParentTaskID == parent.ID[:32] {
					children[ev.Host] = true
				}
			}
		}
		if len(children) != 3 {
			t.Errorf("children spread from a task ran on %v, want all 3 hosts", children)
		}
		// Hard affinity to a missing host fails at once (Ray's
		// TaskUnschedulableError).
		ref := submitOn(t, cs[0], client.Call{Module: mod, Function: "work", Args: []any{1}, Scheduling: client.Scheduling{NodeID: "no-such-host"}})
		var v int
		err = cs[0].Get(ctx, ref, &v)
		var te *ray.TaskError
		if !errors.As(err, &te) || te.Kind != "infeasible" {
			t.Errorf("hard affinity to a missing host: err = %v, want an infeasible TaskError", err)
		}
		// A resource no host has: in a cluster, which hosts may join, the
		// task waits, as Ray's infeasible tasks do, and its events say why.
		ref = submitOn(t, cs[0], client.Call{Module: mod, Function: "work", Args: []any{1}, Resources: map[string]float64{"tpu": 1}})
		waitEvent(t, cs[0], ref, func(ev client.TaskEvent) bool {
			return ev.State == "pending_resources" && strings.HasPrefix(ev.Message, "infeasible, waiting for a host that fits")
		})
		if ready, _, err := cs[0].Wait(ctx, []client.ObjectRef{ref}, 1, 0); err != nil || len(ready) != 0 {
			t.Errorf("Wait on an infeasible task = %v, %v; want not ready", ready, err)
		}
		if st, err := cs[0].ClusterStatus(ctx); err != nil || len(st.Infeasible) != 1 || st.Infeasible[0].Tasks != 1 || st.Infeasible[0].Resources["tpu"] != 1 {
			t.Errorf("infeasible demand = %+v, %v; want 1 task needing a tpu", st.Infeasible, err)
		}
		if err := cs[0].Cancel(ctx, ref, false, false); err != nil {
			t.Fatal(err)
		}
		if err := cs[0].Get(ctx, ref, &v); !errors.Is(err, client.ErrTaskCancelled) {
			t.Errorf("Get of the cancelled infeasible task = %v, want ErrTaskCancelled", err)
		}
	})
}

// TestClusterFailures covers what happens when hosts go away: lineage
// reconstruction, a lost Put, and an owner that died.
func TestClusterFailures(t *testing.T) {
	hosts := testutil.StartCluster(t, 4, nil)
	cs := make([]*client.Client, len(hosts))
	for i, h := range hosts {
		cs[i] = client.New(h.Addr())
	}
	mod := testutil.Register(t, cs[0], guestPkg)
	ctx := ctxFor(t, testutil.HangGuard)
	const n = 1 << 20

	// Made on host 1 (soft: it may run elsewhere when rebuilt), then host 1
	// goes with the only copy. Soft affinity lets it run elsewhere the
	// first time too, when host 1 has no free CPU in host 0's view (a
	// loaded machine): then it is made again, until host 1 made it.
	var made client.ObjectRef
	for attempt := 1; ; attempt++ {
		made = submitOn(t, cs[0], client.Call{Module: mod, Function: "make_bytes", Args: []any{n},
			Scheduling: client.Scheduling{NodeID: hosts[1].ID(), Soft: true}})
		if _, _, err := cs[0].Wait(ctx, []client.ObjectRef{made}, 1, -1); err != nil {
			t.Fatal(err)
		}
		if ran := hostsOf(t, cs[0])[made.ID[:32]]; len(ran) == 1 && ran[0] == hosts[1].ID() {
			break
		} else if attempt == 10 {
			t.Fatalf("make_bytes, soft-pinned to %s, ran on %v ten times", hosts[1].ID(), ran)
		}
	}
	// A Put made by a task on host 2 for host 0 (its owner), held on host 2.
	// Pinned to host 2, it fails as infeasible if gossip declared host 2
	// failed meanwhile (a machine starved of CPU misses probes, and the
	// host refutes it and comes back): then it is made again, once all
	// four are members.
	var putRef client.ObjectRef
	for attempt := 1; ; attempt++ {
		err := cs[0].Get(ctx, submitOn(t, cs[0], client.Call{Module: mod, Function: "put_bytes", Args: []any{n},
			Scheduling: client.Scheduling{NodeID: hosts[2].ID()}}), &putRef)
		var te *client.TaskError
		if err == nil {
			break
		}
		if !errors.As(err, &te) || te.Kind != "infeasible" || attempt == 10 {
			t.Fatal(err)
		}
		testutil.WaitMembers(t, cs[0], 4)
	}
	if _, _, err := cs[0].Wait(ctx, []client.ObjectRef{made}, 1, -1); err != nil {
		t.Fatal(err)
	}
	// A Put owned by host 3.
	owned, err := cs[3].Put(ctx, "host 3's value")
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{1, 2, 3} {
		if err := hosts[i].Close(); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitMembers(t, cs[0], 1)

	t.Run("lineage", func(t *testing.T) {
		var got []byte
		if err := cs[0].Get(ctx, made, &got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, testutil.MadeBytes(n)) {
			t.Fatalf("rebuilt object: %d bytes, not what make_bytes makes", len(got))
		}
		evs, _, _ := cs[0].ListTasks(ctx, "")
		rebuilt := false
		for _, ev := range evs {
			if ev.TaskID == made.ID[:32] && ev.State == "retried" {
				rebuilt = true
			}
		}
		if !rebuilt {
			t.Errorf("no retried event for the rebuilt task")
		}
	})
	t.Run("put_lost", func(t *testing.T) {
		var got []byte
		err := cs[0].Get(ctx, putRef, &got)
		if !errors.Is(err, ray.ErrObjectLost) || !errors.Is(err, client.ErrObjectLost) {
			t.Fatalf("Get of a Put whose only copy is gone: %v, want ErrObjectLost", err)
		}
	})
	t.Run("lost_argument", func(t *testing.T) {
		// A task and an actor call whose argument is a lost Put fail with
		// ErrObjectLost; the actor lives on with its state.
		var got []int64
		err := cs[0].Get(ctx, submitOn(t, cs[0], client.Call{Module: mod, Function: "byte_sum", Args: []any{putRef}}), &got)
		if !errors.Is(err, ray.ErrObjectLost) {
			t.Fatalf("a task with a lost argument: %v, want ErrObjectLost", err)
		}
		if err := cs[0].Get(ctx, submitOn(t, cs[0], client.Call{Module: mod, Function: "make_named", Args: []any{"keeper", 0}}), new(int)); err != nil {
			t.Fatal(err)
		}
		var n int
		err = cs[0].Get(ctx, submitOn(t, cs[0], client.Call{Module: mod, Function: "named_incr_by", Args: []any{"keeper", []client.ObjectRef{putRef}}}), &n)
		if !errors.Is(err, ray.ErrObjectLost) {
			t.Fatalf("an actor call with a lost argument: %v, want ErrObjectLost", err)
		}
		if err := cs[0].Get(ctx, submitOn(t, cs[0], client.Call{Module: mod, Function: "named_incr", Args: []any{"keeper"}}), &n); err != nil || n != 6 {
			t.Fatalf("the actor after a call failed = %d, %v; want 6 (it kept its state)", n, err)
		}
	})
	t.Run("owner_died", func(t *testing.T) {
		var got string
		err := cs[0].Get(ctx, owned, &got)
		if !errors.Is(err, ray.ErrOwnerDied) {
			t.Fatalf("Get of an object whose owner left: %v, want ErrOwnerDied", err)
		}
	})
}

func TestClusterActors(t *testing.T) {
	hosts := testutil.StartCluster(t, 3, nil)
	c := client.New(hosts[0].Addr())
	mod := testutil.Register(t, c, guestPkg)
	ctx := ctxFor(t, testutil.HangGuard)
	var last int
	if err := c.Get(ctx, submitOn(t, c, client.Call{Module: mod, Function: "remote_counter", Args: []any{hosts[1].ID(), 200, 1}}), &last); err != nil || last != 200 {
		t.Fatalf("remote_counter = %d, %v", last, err)
	}
	actors, err := c.ListActors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var a client.Actor
	for _, x := range actors {
		if x.Name == "remote-"+hosts[1].ID() {
			a = x
		}
	}
	if a.Host != hosts[1].ID() || a.State != "alive" || a.Calls < 201 {
		t.Fatalf("actor = %+v, want alive on %s with 201 calls", a, hosts[1].ID())
	}
	// Its host goes: it restarts elsewhere (MaxRestarts 1), state reset.
	if err := hosts[1].Close(); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := c.Get(ctx, submitOn(t, c, client.Call{Module: mod, Function: "named_incr", Args: []any{"remote-" + hosts[1].ID()}}), &n); err != nil || n != 1 {
		t.Fatalf("a call after its host left = %d, %v; want 1 (restarted, state reset)", n, err)
	}
	actors, _ = c.ListActors(ctx)
	for _, x := range actors {
		if x.Name == "remote-"+hosts[1].ID() && (x.Host == hosts[1].ID() || x.Restarts != 1) {
			t.Fatalf("actor after restart = %+v", x)
		}
	}
}

// waitEvent waits (within the hang guard) until one of ref's task events
// satisfies ok.
func waitEvent(t *testing.T, c *client.Client, ref client.ObjectRef, ok func(client.TaskEvent) bool) {
	t.Helper()
	ctx := ctxFor(t, testutil.HangGuard)
	for {
		evs, err := c.TaskEvents(ctx, ref.ID[:32])
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if ok(ev) {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no such event for %s: %+v", ref.ID, evs)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
