// This file holds the tests of the explicit strategies, Spread and node
// affinity (hard and soft), and of placement with custom resources.

package scheduler

import (
	"fmt"
	"maps"
	"testing"
)

func TestSpread(t *testing.T) {
	spread := Placement{Spread: true}
	tests := []struct {
		name  string
		setup []step
		pl    Placement
		n     int
		want  map[string]int
	}{
		{"first three tasks on three nodes", nil, spread, 3, map[string]int{"": 1, "a": 1, "b": 1}},
		{"six tasks two on each", nil, spread, 6, map[string]int{"": 2, "a": 2, "b": 2}},
		{"busy local is skipped though under half", []step{
			enq("busy", cpus(t, 1), Placement{}), next("busy", ""),
		}, spread, 2, map[string]int{"a": 1, "b": 1}},
		{"locality does not pack a spread task", []step{
			enq("busy", cpus(t, 1), Placement{NodeID: "a"}), next("busy", "a"),
		}, Placement{Spread: true, Locality: map[string]int64{"a": 1 << 20}}, 2, map[string]int{"": 1, "b": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := threeNodes(t).build()
			run(t, s, tt.setup)
			for i := range tt.n {
				if err := s.Enqueue(fmt.Sprint("s", i), cpus(t, 1), tt.pl, i); err != nil {
					t.Fatal(err)
				}
			}
			got := map[string]int{}
			for i := range tt.n {
				it, ok := s.Next()
				if !ok {
					t.Fatalf("placement %d: nothing placed", i)
				}
				got[it.Node]++
			}
			if !maps.Equal(got, tt.want) {
				t.Fatalf("counts %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNodeAffinity(t *testing.T) {
	one := cpus(t, 1)
	hardA := Placement{NodeID: "a"}
	softA := Placement{NodeID: "a", Soft: true}
	named := clusterSpec{local: cpus(t, 4), localName: "me", peers: []peerSpec{
		{id: "a", total: cpus(t, 4)}, {id: "b", total: cpus(t, 4)},
	}}
	fullA := clusterSpec{local: cpus(t, 4), peers: []peerSpec{
		{id: "a", total: cpus(t, 4), avail: new(cpus(t, 0))}, {id: "b", total: cpus(t, 4)},
	}}
	tests := []struct {
		name    string
		cluster clusterSpec
		steps   []step
	}{
		{"hard goes to its node though local is idle", threeNodes(t), []step{
			enq("x", one, hardA), next("x", "a"),
		}},
		{"hard packs its node past half", threeNodes(t), []step{
			enq("x1", one, hardA), enq("x2", one, hardA), enq("x3", one, hardA), enq("x4", one, hardA),
			enq("x5", one, hardA),
			next("x1", "a"), next("x2", "a"), next("x3", "a"), next("x4", "a"),
			none(), // a is full; local and b are idle but not allowed
		}},
		{"hard waits while its node is full", fullA, []step{
			enq("x", one, hardA), none(), none(),
			releaseOn("a", one), next("x", "a"),
		}},
		{"hard waits for a load report freeing its node", fullA, []step{
			enq("x", one, hardA), none(),
			avail("a", cpus(t, 2)), next("x", "a"),
		}},
		{"hard waits while its node is blocked", threeNodes(t), []step{
			block("a"), enq("x", one, hardA), none(),
			avail("a", cpus(t, 4)), next("x", "a"),
		}},
		{"hard to an unknown node is infeasible", threeNodes(t), []step{
			enqErr("x", one, Placement{NodeID: "nope"}), none(),
		}},
		{"hard to a node too small is infeasible", threeNodes(t), []step{
			enqErr("x", cpus(t, 5), hardA), none(),
		}},
		{"hard to a node lacking a resource is infeasible", clusterSpec{local: cpus(t, 4), peers: []peerSpec{
			{id: "a", total: cpus(t, 4)}, {id: "b", total: res(t, 4, 1, nil)},
		}}, []step{
			enqErr("x", res(t, 1, 1, nil), hardA), enq("y", res(t, 1, 1, nil), Placement{}), next("y", "b"),
		}},
		{"hard to the local node by its name", named, []step{
			enq("x1", one, Placement{NodeID: "me"}), enq("x2", one, Placement{NodeID: "me"}),
			enq("x3", one, Placement{NodeID: "me"}),
			next("x1", ""), next("x2", ""), next("x3", ""), // past half: still local
		}},
		{"hard to the local node waits for it", named, []step{
			enq("fill", cpus(t, 4), Placement{NodeID: "me"}), next("fill", ""),
			enq("x", one, Placement{NodeID: "me"}), none(),
			releaseOn("", cpus(t, 4)), next("x", ""),
		}},
		{"hard to the local name before it is set is infeasible", threeNodes(t), []step{
			enqErr("x", one, Placement{NodeID: "me"}),
		}},
		{"soft goes to its node when it has room", threeNodes(t), []step{
			enq("x1", one, softA), enq("x2", one, softA), enq("x3", one, softA),
			next("x1", "a"), next("x2", "a"), next("x3", "a"), // past half: still a
		}},
		{"soft waits while its node is busy, as in Ray", fullA, []step{
			enq("x", one, softA), none(),
		}},
		{"soft falls back when its node is blocked", threeNodes(t), []step{
			block("a"), enq("x", one, softA), next("x", ""),
		}},
		{"soft falls back when its node is unknown", threeNodes(t), []step{
			enq("x", one, Placement{NodeID: "nope", Soft: true}), next("x", ""),
		}},
		{"soft falls back when its node is too small", clusterSpec{local: cpus(t, 8), peers: []peerSpec{
			{id: "a", total: cpus(t, 4)},
		}}, []step{
			enq("x", cpus(t, 6), softA), next("x", ""),
		}},
		{"soft with a node gone after enqueue falls back", threeNodes(t), []step{
			enq("x", one, softA), removeNode("a"), next("x", ""),
		}},
		{"soft that fits nowhere is infeasible", threeNodes(t), []step{
			enqErr("x", cpus(t, 5), softA),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run(t, tt.cluster.build(), tt.steps)
		})
	}
}

func TestCustomResources(t *testing.T) {
	one := cpus(t, 1)
	tpu := res(t, 1, 0, map[string]float64{"tpu": 1})
	tpuCluster := clusterSpec{local: cpus(t, 4), peers: []peerSpec{
		{id: "a", total: cpus(t, 4)},
		{id: "b", total: res(t, 4, 0, map[string]float64{"tpu": 2})},
	}}
	tests := []struct {
		name    string
		cluster clusterSpec
		steps   []step
	}{
		{"task needing a resource only one peer has goes there", tpuCluster, []step{
			enq("x1", tpu, Placement{}), enq("x2", tpu, Placement{}), enq("x3", tpu, Placement{}),
			next("x1", "b"), next("x2", "b"), // past half of b's tpu: b is still the only one
			none(), // local and a have free CPUs, but no tpu
			releaseOn("b", tpu), next("x3", "b"),
		}},
		{"gpu task goes to the gpu peer", clusterSpec{local: cpus(t, 4), peers: []peerSpec{
			{id: "a", total: cpus(t, 4)}, {id: "g", total: res(t, 4, 2, nil)},
		}}, []step{
			enq("g", res(t, 1, 1, nil), Placement{}), next("g", "g"),
		}},
		{"spread task needing a custom resource goes where it is", tpuCluster, []step{
			enq("x", tpu, Placement{Spread: true}), next("x", "b"),
		}},
		{"more of a custom resource than any node has is infeasible", tpuCluster, []step{
			enqErr("x", res(t, 1, 0, map[string]float64{"tpu": 3}), Placement{}), none(),
		}},
		{"custom resource nobody has is infeasible", tpuCluster, []step{
			enqErr("x", res(t, 1, 0, map[string]float64{"fpga": 1}), Placement{}),
		}},
		{"more CPUs than any node is infeasible", tpuCluster, []step{
			enqErr("x", cpus(t, 5), Placement{}),
		}},
		{"removing the only tpu node returns exactly its tasks in order", tpuCluster, []step{
			enq("t1", tpu, Placement{}),
			enq("c1", one, Placement{}),
			enq("t2", one, Placement{NodeID: "b"}),
			enq("c2", one, Placement{NodeID: "b", Soft: true}),
			enq("t3", tpu, Placement{Spread: true}),
			enq("t4", tpu, Placement{}),
			enq("c3", one, Placement{NodeID: "a"}),
			removeNode("b", "t1", "t2", "t3", "t4"),
			next("c1", ""), next("c2", ""), next("c3", "a"), none(),
		}},
		{"removing one of two capable nodes returns nothing", clusterSpec{local: cpus(t, 4), peers: []peerSpec{
			{id: "a", total: res(t, 4, 0, map[string]float64{"tpu": 1})},
			{id: "b", total: res(t, 4, 0, map[string]float64{"tpu": 1})},
		}}, []step{
			enq("x", tpu, Placement{}), removeNode("b"), next("x", "a"),
		}},
		{"removing the only capable node after some ran returns the rest", tpuCluster, []step{
			enq("x1", tpu, Placement{}), enq("x2", tpu, Placement{}), enq("x3", tpu, Placement{}),
			next("x1", "b"),
			removeNode("b", "x2", "x3"), none(),
			enqErr("x4", tpu, Placement{}),
		}},
		{"removing an unknown node or the local one returns nothing", tpuCluster, []step{
			enq("x", one, Placement{NodeID: "b"}),
			removeNode("nope"), removeNode(""), next("x", "b"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run(t, tt.cluster.build(), tt.steps)
		})
	}
}
