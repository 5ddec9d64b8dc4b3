package scheduler

import (
	"errors"
	"slices"
	"testing"
)

// The placement_*_test.go files pin down the cluster placement policy of
// Next: Ray's hybrid default (pack the preferred node up to half
// utilisation, then the least utilised node), locality, Spread, node
// affinity, custom resources, blocked and removed nodes, per-shape FIFO and
// the bookkeeping of Item.Node and node availability. Ties between equally
// utilised nodes are rotated, so where the policy allows several nodes the
// cases accept any of them. This file holds the harness they share: a
// cluster spec, steps, and run, which plays steps against a scheduler.

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
			if q := s.Queued(); q != queued {
				t.Fatalf("step %d: Queued = %d after RemoveNode, want %d (what no node fits stays queued)", i, q, queued)
			}
			if slices.Contains(s.Nodes(), st.node) {
				t.Fatalf("step %d: %q still in Nodes after RemoveNode", i, st.node)
			}
			if i+1 < len(steps) && steps[i+1].do == "none" {
				// What stays queued waits for a node that fits: take the
				// tasks out, so the next steps see what is left.
				for _, k := range st.keys {
					if !s.Remove(k) {
						t.Fatalf("step %d: %s was taken out of the queue by RemoveNode", i, k)
					}
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
