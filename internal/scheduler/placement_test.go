package scheduler

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
)

// This file pins down the cluster placement policy of Next: Ray's hybrid
// default (pack the preferred node up to half utilisation, then the least
// utilised node), locality, Spread, node affinity, custom resources,
// blocked and removed nodes, per-shape FIFO and the bookkeeping of Item.Node
// and node availability. Ties between equally utilised nodes are rotated, so
// where the policy allows several nodes the cases accept any of them.

// peerSpec describes one peer of a test cluster.
type peerSpec struct {
	id    string
	total Resources
	avail *Resources // nil: all of total is free
}

// clusterSpec is the starting state of a test scheduler.
type clusterSpec struct {
	local     Resources
	localName string
	peers     []peerSpec
}

func (c clusterSpec) build() *Scheduler[string, int] {
	s := New[string, int](c.local)
	if c.localName != "" {
		s.SetLocalName(c.localName)
	}
	for _, p := range c.peers {
		avail := p.total
		if p.avail != nil {
			avail = *p.avail
		}
		s.SetNode(p.id, p.total, avail)
	}
	return s
}

// step is one operation on a scheduler and what it must give back.
type step struct {
	do    string // enq, next, none, release, block, avail, cancel, remove
	key   string
	req   Resources
	pl    Placement
	node  string   // next: node wanted; release/block/avail/remove: node acted on
	nodes []string // next: any of these nodes will do (rotated ties)
	keys  []string // remove: keys RemoveNode must return, in order
	err   error    // enq: error wanted (errors.Is), nil for success
}

func enq(key string, req Resources, pl Placement) step {
	return step{do: "enq", key: key, req: req, pl: pl}
}

func enqErr(key string, req Resources, pl Placement) step {
	return step{do: "enq", key: key, req: req, pl: pl, err: ErrInfeasible}
}

// next wants key placed on node.
func next(key, node string) step { return step{do: "next", key: key, node: node} }

// nextAny wants key placed on one of nodes.
func nextAny(key string, nodes ...string) step { return step{do: "next", key: key, nodes: nodes} }

// none wants Next to place nothing.
func none() step { return step{do: "none"} }

func releaseOn(node string, r Resources) step { return step{do: "release", node: node, req: r} }
func block(node string) step                  { return step{do: "block", node: node} }
func avail(node string, r Resources) step     { return step{do: "avail", node: node, req: r} }
func cancel(key string) step                  { return step{do: "cancel", key: key} }
func removeNode(node string, keys ...string) step {
	return step{do: "remove", node: node, keys: keys}
}

func run(t *testing.T, s *Scheduler[string, int], steps []step) {
	t.Helper()
	for i, st := range steps {
		switch st.do {
		case "enq":
			err := s.Enqueue(st.key, st.req, st.pl, i)
			if st.err == nil && err != nil {
				t.Fatalf("step %d: Enqueue(%s) = %v, want success", i, st.key, err)
			}
			if st.err != nil && !errors.Is(err, st.err) {
				t.Fatalf("step %d: Enqueue(%s) = %v, want %v", i, st.key, err, st.err)
			}
		case "next":
			it, ok := s.Next()
			if !ok {
				t.Fatalf("step %d: Next placed nothing, want %s", i, st.key)
			}
			if it.Key != st.key {
				t.Fatalf("step %d: Next = %s on %q, want %s", i, it.Key, it.Node, st.key)
			}
			if st.nodes != nil {
				if !slices.Contains(st.nodes, it.Node) {
					t.Fatalf("step %d: %s placed on %q, want one of %q", i, it.Key, it.Node, st.nodes)
				}
			} else if it.Node != st.node {
				t.Fatalf("step %d: %s placed on %q, want %q", i, it.Key, it.Node, st.node)
			}
		case "none":
			if it, ok := s.Next(); ok {
				t.Fatalf("step %d: Next = %s on %q, want nothing", i, it.Key, it.Node)
			}
		case "release":
			s.ReleaseOn(st.node, st.req)
		case "block":
			s.Block(st.node)
		case "avail":
			s.SetAvailable(st.node, st.req)
		case "cancel":
			queued := s.Queued()
			if !s.Remove(st.key) {
				t.Fatalf("step %d: Remove(%s): not queued", i, st.key)
			}
			if q := s.Queued(); q != queued-1 {
				t.Fatalf("step %d: Queued = %d after Remove, want %d", i, q, queued-1)
			}
		case "remove":
			queued := s.Queued()
			var got []string
			for _, it := range s.RemoveNode(st.node) {
				got = append(got, it.Key)
			}
			if !slices.Equal(got, st.keys) {
				t.Fatalf("step %d: RemoveNode(%q) = %q, want %q", i, st.node, got, st.keys)
			}
			if q := s.Queued(); q != queued-len(got) {
				t.Fatalf("step %d: Queued = %d after RemoveNode, want %d", i, q, queued-len(got))
			}
			if slices.Contains(s.Nodes(), st.node) {
				t.Fatalf("step %d: %q still in Nodes after RemoveNode", i, st.node)
			}
			for _, k := range st.keys {
				if s.Remove(k) {
					t.Fatalf("step %d: %s still queued after RemoveNode returned it", i, k)
				}
			}
		default:
			t.Fatalf("step %d: unknown op %q", i, st.do)
		}
	}
}

// availOf is the free resources the scheduler sees on node ("" is local).
func availOf(t *testing.T, s *Scheduler[string, int], id string) Resources {
	t.Helper()
	if id == "" {
		return s.Available()
	}
	n := s.node(id)
	if n == nil {
		t.Fatalf("no node %q", id)
	}
	return n.avail.Clone()
}

func cpus(t *testing.T, n float64) Resources { return res(t, n, 0, nil) }

// threeNodes is a local host and peers a and b, 4 CPUs each.
func threeNodes(t *testing.T) clusterSpec {
	return clusterSpec{local: cpus(t, 4), peers: []peerSpec{
		{id: "a", total: cpus(t, 4)},
		{id: "b", total: cpus(t, 4)},
	}}
}

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
	if q := s.Queued(); q != 1 {
		t.Fatalf("Queued = %d, want 1", q)
	}
	if got := s.Nodes(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("Nodes = %q, want [a]", got)
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
