// This file holds the tests of the scheduler's bookkeeping of nodes and
// queues: removed and blocked nodes, per-shape FIFO order, Item.Node and
// node availability, and the rotation of ties.

package scheduler

import (
	"fmt"
	"maps"
	"slices"
	"testing"
)

func TestRemoveNodeBookkeeping(t *testing.T) {
	s := clusterSpec{local: cpus(t, 4), peers: []peerSpec{
		{id: "a", total: cpus(t, 4)},
		{id: "b", total: res(t, 4, 0, map[string]float64{"tpu": 2})},
	}}.build()
	tpu := res(t, 1, 0, map[string]float64{"tpu": 1})
	for i, k := range []string{"t1", "c1", "t2"} {
		req := tpu
		if k[0] == 'c' {
			req = cpus(t, 1)
		}
		if err := s.Enqueue(k, req, Placement{}, 100+i); err != nil {
			t.Fatal(err)
		}
	}
	out := s.RemoveNode("b")
	if len(out) != 2 || out[0].Key != "t1" || out[1].Key != "t2" {
		t.Fatalf("RemoveNode = %+v, want t1, t2", out)
	}
	if out[0].Value != 100 || out[1].Value != 102 || !slices.Equal(out[0].Req.Custom, tpu.Custom) {
		t.Fatalf("returned items lost their value or request: %+v", out)
	}
	if q := s.Queued(); q != 3 {
		t.Fatalf("Queued = %d, want 3: what no node fits waits for one that does", q)
	}
	if inf := s.Infeasible(); len(inf) != 2 || inf[0].Key != "t1" || inf[1].Key != "t2" {
		t.Fatalf("Infeasible = %+v, want t1, t2", inf)
	}
	// c1 runs; t1 and t2 wait until a node with a tpu joins.
	if it, ok := s.Next(); !ok || it.Key != "c1" {
		t.Fatalf("Next = %+v, %v; want c1", it, ok)
	}
	if it, ok := s.Next(); ok {
		t.Fatalf("Next = %+v: nothing fits", it)
	}
	s.SetNode("c", res(t, 4, 0, map[string]float64{"tpu": 1}), res(t, 4, 0, map[string]float64{"tpu": 1}))
	if it, ok := s.Next(); !ok || it.Key != "t1" || it.Node != "c" {
		t.Fatalf("Next after a tpu node joined = %+v, %v; want t1 on c", it, ok)
	}
	if got := s.Nodes(); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("Nodes = %q, want [a c]", got)
	}
	if out := s.RemoveNode("b"); out != nil {
		t.Fatalf("second RemoveNode = %+v, want nil", out)
	}
}

func TestBlock(t *testing.T) {
	one := cpus(t, 1)
	twoNodes := clusterSpec{local: cpus(t, 2), localName: "me", peers: []peerSpec{{id: "a", total: cpus(t, 2)}}}
	tests := []struct {
		name    string
		cluster clusterSpec
		steps   []step
	}{
		{"blocked peer gets nothing until its load report", twoNodes, []step{
			block("a"),
			enq("1", one, Placement{}), enq("2", one, Placement{}), enq("3", one, Placement{}),
			next("1", ""), next("2", ""), none(), none(),
			avail("a", cpus(t, 2)), next("3", "a"),
		}},
		{"blocked peer gets no spread task", twoNodes, []step{
			block("a"),
			enq("1", one, Placement{Spread: true}), enq("2", one, Placement{Spread: true}),
			enq("3", one, Placement{Spread: true}),
			next("1", ""), next("2", ""), none(),
			avail("a", cpus(t, 2)), next("3", "a"),
		}},
		{"blocked peer gets no locality task", twoNodes, []step{
			block("a"), enq("1", one, Placement{Locality: map[string]int64{"a": 1 << 20}}), next("1", ""),
		}},
		{"load report with nothing free unblocks but places nothing", twoNodes, []step{
			block("a"), enq("1", cpus(t, 2), Placement{}), enq("2", cpus(t, 2), Placement{}),
			next("1", ""), none(),
			avail("a", cpus(t, 0)), none(),
			avail("a", cpus(t, 2)), next("2", "a"),
		}},
		{"local node is never blocked", twoNodes, []step{
			block(""), block("me"),
			enq("1", one, Placement{}), enq("2", one, Placement{NodeID: "me"}),
			next("1", ""), next("2", ""),
		}},
		{"block of an unknown node is ignored", twoNodes, []step{
			block("nope"), avail("nope", one), enq("1", one, Placement{}), next("1", ""),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run(t, tt.cluster.build(), tt.steps)
		})
	}
}

func TestFIFOPerShape(t *testing.T) {
	one := cpus(t, 1)
	tests := []struct {
		name    string
		cluster clusterSpec
		steps   []step
	}{
		{"same shape keeps submission order across nodes", threeNodes(t), func() []step {
			var steps []step
			for i := range 12 {
				steps = append(steps, enq(fmt.Sprintf("t%02d", i), one, Placement{}))
			}
			for i := range 12 {
				steps = append(steps, nextAny(fmt.Sprintf("t%02d", i), "", "a", "b"))
			}
			return append(steps, none())
		}()},
		{"earliest head across shapes goes first", threeNodes(t), []step{
			enq("a", one, Placement{}), enq("b", cpus(t, 2), Placement{}),
			enq("c", one, Placement{Spread: true}), enq("d", one, Placement{NodeID: "b"}),
			enq("e", cpus(t, 0.5), Placement{}),
			next("a", ""),          // local at 1/4
			nextAny("b", "a", "b"), // local would be at 3/4
			nextAny("c", "a", "b"), // spread: the idle peer
			next("d", "b"),
			next("e", ""), // local at 3/8
			none(),
		}},
		{"big head does not block small tasks of another shape", clusterSpec{local: cpus(t, 2), peers: []peerSpec{
			{id: "a", total: cpus(t, 2), avail: new(cpus(t, 1))},
		}}, []step{
			enq("busy", one, Placement{}), next("busy", ""),
			enq("big", cpus(t, 2), Placement{}), enq("s1", one, Placement{}), enq("s2", one, Placement{}),
			nextAny("s1", "", "a"), nextAny("s2", "", "a"), none(),
			releaseOn("", one), releaseOn("", one), next("big", ""),
		}},
		{"big head keeps its place in its own queue", clusterSpec{local: cpus(t, 2), peers: []peerSpec{
			{id: "a", total: cpus(t, 2)},
		}}, []step{
			enq("busy1", one, Placement{}), enq("busy2", one, Placement{}),
			next("busy1", ""), next("busy2", "a"),
			enq("big1", cpus(t, 2), Placement{}), enq("big2", cpus(t, 2), Placement{}), none(),
			releaseOn("", one), next("big1", ""), none(),
			releaseOn("a", one), next("big2", "a"),
		}},
		{"hard affinity waiting does not block the same shape elsewhere", clusterSpec{local: cpus(t, 4), peers: []peerSpec{
			{id: "a", total: cpus(t, 4), avail: new(cpus(t, 0))},
		}}, []step{
			enq("pinned", one, Placement{NodeID: "a"}), enq("free", one, Placement{}),
			next("free", ""), none(),
			releaseOn("a", one), next("pinned", "a"),
		}},
		{"cancelled task frees its place in line", threeNodes(t), []step{
			enq("x1", one, Placement{}), enq("x2", one, Placement{}), enq("x3", one, Placement{}),
			cancel("x2"), next("x1", ""), next("x3", ""), none(),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run(t, tt.cluster.build(), tt.steps)
		})
	}
}

func TestItemNodeAndAvailability(t *testing.T) {
	gpuCluster := clusterSpec{
		local:     res(t, 4, 2, map[string]float64{"mem": 8}),
		localName: "me",
		peers: []peerSpec{
			{id: "a", total: res(t, 4, 2, map[string]float64{"mem": 8})},
			{id: "b", total: cpus(t, 4)},
		},
	}
	tests := []struct {
		name     string
		req      Resources
		pl       Placement
		wantNode string
	}{
		{"local placement has empty node", res(t, 1, 0, nil), Placement{}, ""},
		{"local by name still reports empty node", res(t, 1, 1, map[string]float64{"mem": 2}), Placement{NodeID: "me"}, ""},
		{"peer placement reports the peer id", res(t, 1, 1, map[string]float64{"mem": 2}), Placement{NodeID: "a"}, "a"},
		{"peer by locality", res(t, 0.5, 0, nil), Placement{Locality: map[string]int64{"b": 1}}, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := gpuCluster.build()
			before := map[string]Resources{}
			for _, id := range []string{"", "a", "b"} {
				before[id] = availOf(t, s, id)
			}
			if err := s.Enqueue("k", tt.req, tt.pl, 42); err != nil {
				t.Fatal(err)
			}
			it, ok := s.Next()
			if !ok {
				t.Fatal("nothing placed")
			}
			if it.Node != tt.wantNode || it.Key != "k" || it.Value != 42 || it.Req.key() != tt.req.key() || it.Place.key() != tt.pl.key() {
				t.Fatalf("Next = %+v, want key k, value 42, node %q", it, tt.wantNode)
			}
			for _, id := range []string{"", "a", "b"} {
				want := before[id].Clone()
				if id == tt.wantNode {
					want.add(tt.req, -1)
				}
				got := availOf(t, s, id)
				if got.CPU != want.CPU || got.GPU != want.GPU {
					t.Errorf("node %q: %v free, want %v", id, got, want)
				}
				for _, a := range want.Custom {
					if got.custom(a.Name) != a.Units {
						t.Errorf("node %q: %v free, want %v", id, got, want)
					}
				}
			}
			// Releasing on the node Next named restores it exactly.
			s.ReleaseOn(it.Node, it.Req)
			for _, id := range []string{"", "a", "b"} {
				got, want := availOf(t, s, id), before[id]
				if got.CPU != want.CPU || got.GPU != want.GPU {
					t.Errorf("after release, node %q: %v free, want %v", id, got, want)
				}
				for _, a := range want.Custom {
					if got.custom(a.Name) != a.Units {
						t.Errorf("after release, node %q: %v free, want %v", id, got, want)
					}
				}
			}
		})
	}
}

// TestTieRotation pins down "ties broken by rotation so equal nodes share
// the work". Two nodes of 2 CPUs, each with 1 CPU in use, are tied for any
// task; zero-CPU Spread tasks keep them tied, so rotation alone decides.
func TestTieRotation(t *testing.T) {
	tied := func(t *testing.T) *Scheduler[string, int] {
		s := clusterSpec{local: cpus(t, 2), peers: []peerSpec{
			{id: "p", total: cpus(t, 2), avail: new(cpus(t, 1))},
		}}.build()
		s.Acquire(cpus(t, 1))
		return s
	}
	zeroSpread := Placement{Spread: true}

	t.Run("tied nodes take turns", func(t *testing.T) {
		s := tied(t)
		got := map[string]int{}
		for i := range 8 {
			if err := s.Enqueue(fmt.Sprint("z", i), cpus(t, 0), zeroSpread, i); err != nil {
				t.Fatal(err)
			}
			it, ok := s.Next()
			if !ok {
				t.Fatalf("z%d not placed", i)
			}
			got[it.Node]++
		}
		if want := map[string]int{"": 4, "p": 4}; !maps.Equal(got, want) {
			t.Fatalf("counts %v, want %v", got, want)
		}
	})

	t.Run("tied nodes take turns while another shape waits", func(t *testing.T) {
		got := map[string]int{}
		for range 20 {
			s := tied(t)
			// Feasible (a node has 2 CPUs in total) but fits nowhere now.
			if err := s.Enqueue("big", cpus(t, 2), Placement{}, 0); err != nil {
				t.Fatal(err)
			}
			for i := range 8 {
				if err := s.Enqueue(fmt.Sprint("z", i), cpus(t, 0), zeroSpread, i); err != nil {
					t.Fatal(err)
				}
				it, ok := s.Next()
				if !ok || it.Key != fmt.Sprint("z", i) {
					t.Fatalf("Next = %v %v, want z%d", it.Key, ok, i)
				}
				got[it.Node]++
			}
		}
		if want := map[string]int{"": 80, "p": 80}; !maps.Equal(got, want) {
			t.Fatalf("counts over 20 runs %v, want %v", got, want)
		}
	})

	t.Run("same state gives the same placement", func(t *testing.T) {
		seen := map[string]bool{}
		for range 100 {
			s := tied(t)
			if err := s.Enqueue("first", cpus(t, 0), zeroSpread, 0); err != nil {
				t.Fatal(err)
			}
			if err := s.Enqueue("second", cpus(t, 0.5), zeroSpread, 1); err != nil {
				t.Fatal(err)
			}
			it, ok := s.Next()
			if !ok || it.Key != "first" {
				t.Fatalf("Next = %v %v, want first", it.Key, ok)
			}
			seen[it.Node] = true
		}
		if len(seen) != 1 {
			t.Fatalf("first placed on %v across identical runs, want one node", slices.Sorted(maps.Keys(seen)))
		}
	})
}
