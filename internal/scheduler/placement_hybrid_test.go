// This file holds the tests of the default hybrid placement (pack the
// preferred node to half, then the least utilised) and of locality.

package scheduler

import (
	"fmt"
	"maps"
	"testing"
)

// TestHybridCounts enqueues a burst of 1-CPU tasks on three 4-CPU nodes and
// checks how many land on each node after the first n placements.
func TestHybridCounts(t *testing.T) {
	tests := []struct {
		name string
		n    int
		want map[string]int
	}{
		{"first task packs local", 1, map[string]int{"": 1}},
		{"local up to half", 2, map[string]int{"": 2}},
		{"past half goes to an idle peer", 3, map[string]int{"": 2, "a": 1}},
		{"then the other idle peer", 4, map[string]int{"": 2, "a": 1, "b": 1}},
		{"peers fill to half before local grows", 6, map[string]int{"": 2, "a": 2, "b": 2}},
		{"then all share evenly", 9, map[string]int{"": 3, "a": 3, "b": 3}},
		{"burst of 12 uses all three nodes", 12, map[string]int{"": 4, "a": 4, "b": 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := threeNodes(t).build()
			for i := range 13 {
				if err := s.Enqueue(fmt.Sprintf("t%02d", i), cpus(t, 1), Placement{}, i); err != nil {
					t.Fatal(err)
				}
			}
			got := map[string]int{}
			for i := range tt.n {
				it, ok := s.Next()
				if !ok {
					t.Fatalf("placement %d: nothing placed", i)
				}
				if want := fmt.Sprintf("t%02d", i); it.Key != want {
					t.Fatalf("placement %d: got %s, want %s (FIFO)", i, it.Key, want)
				}
				got[it.Node]++
			}
			if tt.n == 3 {
				// The third goes to a or b (rotated), never local.
				if got[""] != 2 || got["a"]+got["b"] != 1 {
					t.Fatalf("counts %v, want 2 local and 1 on a peer", got)
				}
			} else if !maps.Equal(got, tt.want) {
				t.Fatalf("counts %v, want %v", got, tt.want)
			}
			if q := s.Queued(); q != 13-tt.n {
				t.Fatalf("Queued = %d, want %d", q, 13-tt.n)
			}
			if tt.n == 12 {
				if it, ok := s.Next(); ok {
					t.Fatalf("13th task %s placed on %q in a full cluster", it.Key, it.Node)
				}
				for _, id := range []string{"", "a", "b"} {
					if a := availOf(t, s, id); a.CPU != 0 {
						t.Errorf("node %q has %v free, want none", id, a)
					}
				}
			}
		})
	}
}

// TestHybridLeastUtilised checks every placement of the burst against the
// policy: local while it stays at most half used, else a node whose use
// after placing is the least of the nodes that fit.
func TestHybridLeastUtilised(t *testing.T) {
	s := threeNodes(t).build()
	one := cpus(t, 1)
	for i := range 12 {
		if err := s.Enqueue(fmt.Sprint(i), one, Placement{}, i); err != nil {
			t.Fatal(err)
		}
	}
	used := map[string]int64{}
	for i := range 12 {
		localAfter := float64(used[""]+1) / 4
		minAfter := 2.0
		for _, id := range []string{"", "a", "b"} {
			if used[id] < 4 {
				minAfter = min(minAfter, float64(used[id]+1)/4)
			}
		}
		it, ok := s.Next()
		if !ok {
			t.Fatalf("placement %d: nothing placed", i)
		}
		after := float64(used[it.Node]+1) / 4
		switch {
		case localAfter <= 0.5 && it.Node != "":
			t.Fatalf("placement %d: went to %q though local would be %v used", i, it.Node, localAfter)
		case localAfter > 0.5 && after != minAfter:
			t.Fatalf("placement %d: went to %q (%v used after), least is %v", i, it.Node, after, minAfter)
		}
		used[it.Node]++
	}
}

func TestHybrid(t *testing.T) {
	one := cpus(t, 1)
	tests := []struct {
		name    string
		cluster clusterSpec
		steps   []step
	}{
		{"half exactly still packs local", clusterSpec{local: cpus(t, 4), peers: []peerSpec{{id: "a", total: cpus(t, 4)}}}, []step{
			enq("h1", cpus(t, 0.5), Placement{}), enq("h2", cpus(t, 0.5), Placement{}),
			enq("h3", cpus(t, 0.5), Placement{}), enq("h4", cpus(t, 0.5), Placement{}),
			enq("h5", cpus(t, 0.5), Placement{}),
			next("h1", ""), next("h2", ""), next("h3", ""), next("h4", ""),
			next("h5", "a"),
		}},
		{"task over half of local goes to the least utilised node", clusterSpec{local: cpus(t, 4), peers: []peerSpec{
			{id: "a", total: cpus(t, 8)}, {id: "b", total: cpus(t, 16)},
		}}, []step{
			enq("big", cpus(t, 3), Placement{}), next("big", "b"),
		}},
		{"critical resource counts, not just CPU", clusterSpec{
			local: res(t, 4, 0, map[string]float64{"mem": 4}),
			peers: []peerSpec{{id: "a", total: res(t, 4, 0, map[string]float64{"mem": 8})}},
		}, []step{
			// 1/4 CPU but 3/4 mem locally: past half, so the peer at 3/8.
			enq("m", res(t, 1, 0, map[string]float64{"mem": 3}), Placement{}), next("m", "a"),
		}},
		{"gpu is a critical resource too", clusterSpec{
			local: res(t, 4, 2, nil),
			peers: []peerSpec{{id: "a", total: res(t, 4, 4, nil)}},
		}, []step{
			// 1/4 CPU but 2/2 GPUs locally: past half, so the peer at 2/4.
			enq("g", res(t, 1, 2, nil), Placement{}), next("g", "a"),
		}},
		{"busy peer view is taken into account", clusterSpec{local: cpus(t, 4), peers: []peerSpec{
			{id: "a", total: cpus(t, 4), avail: new(cpus(t, 1))},
			{id: "b", total: cpus(t, 4)},
		}}, []step{
			enq("1", one, Placement{}), enq("2", one, Placement{}), enq("3", one, Placement{}),
			enq("4", one, Placement{}), enq("5", one, Placement{}),
			next("1", ""), next("2", ""),
			next("3", "b"), next("4", "b"), // a is at 3/4 already
			nextAny("5", "", "b"), // both at 3/4 after it, a would be full
		}},
		{"released capacity flows to the node that freed", threeNodes(t), burst12(t, []step{
			enq("q1", one, Placement{}), enq("q2", one, Placement{}), enq("q3", one, Placement{}),
			none(),
			releaseOn("b", one), next("q1", "b"), none(),
			releaseOn("", one), next("q2", ""), none(),
			releaseOn("a", one), next("q3", "a"), none(),
		})},
		{"several freed slots on one node all go there", threeNodes(t), burst12(t, []step{
			enq("q1", one, Placement{}), enq("q2", one, Placement{}), enq("q3", one, Placement{}),
			releaseOn("a", cpus(t, 2)), next("q1", "a"), next("q2", "a"), none(),
			releaseOn("", one), next("q3", ""),
		})},
		{"release on a node that is gone is ignored", threeNodes(t), burst12(t, []step{
			enq("q1", one, Placement{}),
			removeNode("b"), releaseOn("b", one), none(),
			releaseOn("a", one), next("q1", "a"),
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run(t, tt.cluster.build(), tt.steps)
		})
	}
}

// burst12 fills three 4-CPU nodes with twelve 1-CPU tasks (as the hybrid
// policy spreads them), then runs more.
func burst12(t *testing.T, more []step) []step {
	var steps []step
	for i := range 12 {
		steps = append(steps, enq(fmt.Sprintf("t%02d", i), cpus(t, 1), Placement{}))
	}
	for i := range 12 {
		steps = append(steps, nextAny(fmt.Sprintf("t%02d", i), "", "a", "b"))
	}
	steps = append(steps, none())
	return append(steps, more...)
}

func TestLocality(t *testing.T) {
	one := cpus(t, 1)
	onA := Placement{Locality: map[string]int64{"a": 1000, "b": 10}}
	tests := []struct {
		name    string
		cluster clusterSpec
		steps   []step
	}{
		{"peer holding most bytes gets the task", threeNodes(t), []step{
			enq("x", one, Placement{Locality: map[string]int64{"a": 10, "b": 1000}}), next("x", "b"),
		}},
		{"locality beats an idle local node", threeNodes(t), []step{
			enq("x", one, onA), next("x", "a"),
		}},
		{"packs the locality peer to half, then falls back", threeNodes(t), []step{
			enq("x1", one, onA), enq("x2", one, onA), enq("x3", one, onA),
			next("x1", "a"), next("x2", "a"),
			nextAny("x3", "", "b"), // a would be at 3/4: least utilised instead
		}},
		{"fallback is the least utilised node", clusterSpec{local: cpus(t, 4), peers: []peerSpec{
			{id: "a", total: cpus(t, 4), avail: new(cpus(t, 1))},
			{id: "b", total: cpus(t, 8)},
		}}, []step{
			enq("x", one, onA), next("x", "b"), // a at 1 after; local 1/4; b 1/8
		}},
		{"locality peer without room falls back", clusterSpec{local: cpus(t, 4), peers: []peerSpec{
			{id: "a", total: cpus(t, 4), avail: new(cpus(t, 0))},
			{id: "b", total: cpus(t, 4)},
		}}, []step{
			enq("x", one, onA), nextAny("x", "", "b"),
		}},
		{"blocked locality peer falls back", threeNodes(t), []step{
			block("a"), enq("x", one, onA), nextAny("x", "", "b"),
		}},
		{"local node by name holds most bytes", clusterSpec{local: cpus(t, 4), localName: "me", peers: []peerSpec{
			{id: "a", total: cpus(t, 4)},
		}}, []step{
			enq("x", one, Placement{Locality: map[string]int64{"me": 1000, "a": 10}}), next("x", ""),
		}},
		{"bytes on unknown nodes are ignored", threeNodes(t), []step{
			enq("x", one, Placement{Locality: map[string]int64{"gone": 1 << 30}}), next("x", ""),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run(t, tt.cluster.build(), tt.steps)
		})
	}
}
