// Package scheduler decides which queued task runs next on a host. It is
// pure logic: no goroutines, clocks or I/O. The host feeds it tasks whose
// arguments are ready and tells it when resources come back; it answers with
// tasks whose resources it has reserved.
//
// Tasks wait in one FIFO queue per resource shape (Ray's "scheduling class"),
// so a task asking for 4 CPUs does not block tasks asking for 1 behind it,
// while tasks of one shape keep their submission order. Across shapes, the
// earliest-submitted head that fits goes first.
package scheduler

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// ErrInfeasible is returned for a request that exceeds the host's total
// resources: it could never run here.
var ErrInfeasible = errors.New("scheduler: infeasible resource request")

// Unit is the fixed-point scale of resource amounts: 1 CPU = 10000 units, as
// in Ray, so fractional requests (0.5 CPU) add up exactly.
const Unit = 10000

// Resources is an amount of each resource, in Units.
type Resources struct {
	CPU, GPU int64
	Custom   []Amount // sorted by Name
}

// Amount is a quantity of one named resource.
type Amount struct {
	Name  string
	Units int64
}

// FromFloat converts a resource count (1.5 CPUs) to Units. An amount finer
// than one Unit (0 < x < 0.0001) is refused rather than rounded to nothing:
// a task asking for 1e-7 GPUs must not run on a host without one (Ray
// refuses it the same way).
func FromFloat(x float64) (int64, error) {
	if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 || x > 1e12 {
		return 0, fmt.Errorf("scheduler: invalid resource amount %v", x)
	}
	if x > 0 && x*Unit < 1 {
		return 0, fmt.Errorf("scheduler: resource amount %v is finer than the precision of 0.0001", x)
	}
	return int64(math.Round(x * Unit)), nil
}

// Make builds Resources from counts; custom may be nil.
func Make(cpu, gpu float64, custom map[string]float64) (Resources, error) {
	var r Resources
	var err error
	if r.CPU, err = FromFloat(cpu); err != nil {
		return r, err
	}
	if r.GPU, err = FromFloat(gpu); err != nil {
		return r, err
	}
	for name, x := range custom {
		if name == "" || name == "CPU" || name == "GPU" {
			return r, fmt.Errorf("scheduler: invalid custom resource name %q", name)
		}
		u, err := FromFloat(x)
		if err != nil {
			return r, err
		}
		if u > 0 {
			r.Custom = append(r.Custom, Amount{name, u})
		}
	}
	slices.SortFunc(r.Custom, func(a, b Amount) int { return strings.Compare(a.Name, b.Name) })
	return r, nil
}

func (r Resources) custom(name string) int64 {
	for _, a := range r.Custom {
		if a.Name == name {
			return a.Units
		}
	}
	return 0
}

// Fits reports whether r is at most avail in every resource.
func (r Resources) Fits(avail Resources) bool {
	if r.CPU > avail.CPU || r.GPU > avail.GPU {
		return false
	}
	for _, a := range r.Custom {
		if a.Units > avail.custom(a.Name) {
			return false
		}
	}
	return true
}

func (r *Resources) add(o Resources, sign int64) {
	r.CPU += sign * o.CPU
	r.GPU += sign * o.GPU
	for _, a := range o.Custom {
		i := slices.IndexFunc(r.Custom, func(b Amount) bool { return b.Name == a.Name })
		if i < 0 {
			r.Custom = append(r.Custom, Amount{a.Name, 0})
			i = len(r.Custom) - 1
		}
		r.Custom[i].Units += sign * a.Units
	}
}

// Clone returns a copy that shares nothing with r.
func (r Resources) Clone() Resources {
	r.Custom = slices.Clone(r.Custom)
	return r
}

// Same reports whether r and o are the same shape.
func (r Resources) Same(o Resources) bool {
	return r.CPU == o.CPU && r.GPU == o.GPU && slices.Equal(r.Custom, o.Custom)
}

// key names r's shape, for the per-shape queues.
func (r Resources) key() string {
	var b strings.Builder
	b.WriteString(strconv.FormatInt(r.CPU, 10))
	b.WriteByte('/')
	b.WriteString(strconv.FormatInt(r.GPU, 10))
	for _, a := range r.Custom {
		b.WriteByte('/')
		b.WriteString(a.Name)
		b.WriteByte('=')
		b.WriteString(strconv.FormatInt(a.Units, 10))
	}
	return b.String()
}

func (r Resources) String() string {
	s := fmt.Sprintf("CPU=%g GPU=%g", float64(r.CPU)/Unit, float64(r.GPU)/Unit)
	for _, a := range r.Custom {
		s += fmt.Sprintf(" %s=%g", a.Name, float64(a.Units)/Unit)
	}
	return s
}

// Item is a queued task, as the scheduler sees it. Key identifies it to the
// caller (the host keeps its task in Value). Node is where Next placed it
// ("" is the local host).
type Item[K comparable, V any] struct {
	Key   K
	Req   Resources
	Place Placement
	Value V
	Node  string
	seq   uint64
}

// Placement says where a task may and would rather run in a cluster. Nodes
// are named by id; the local one by the name given to SetLocalName.
type Placement struct {
	// Spread: least loaded first, rather than packing.
	Spread bool
	// NodeID pins the task to one node (it waits while the node is busy);
	// Soft lets it run elsewhere when that node is gone, unreachable or can
	// never fit it.
	NodeID string
	Soft   bool
	// Locality is how many bytes of the task's arguments each node holds;
	// the default policy prefers the node with the most.
	Locality map[string]int64
	// Depth is how deep in its task tree the task is (0: submitted by a
	// client). Among the tasks that fit, the deepest goes first, then the
	// earliest submitted: a task blocked waiting for its children gives
	// its CPU to them rather than to another root, so a thousand nested
	// chains on one CPU need as many worker processes as one chain is deep.
	Depth int
}

func (p Placement) key() string {
	return fmt.Sprintf("%s|d%d", p.where(), p.Depth)
}

func (p Placement) where() string {
	switch {
	case p.NodeID != "" && !p.Soft:
		return "|node=" + p.NodeID
	case p.NodeID != "":
		return "|soft=" + p.NodeID
	case p.Spread:
		return "|spread"
	}
	return ""
}

type queue[K comparable, V any] struct {
	req   Resources
	items []*Item[K, V] // FIFO; removed items are nil
	head  int
}

func (q *queue[K, V]) peek() *Item[K, V] {
	for q.head < len(q.items) && q.items[q.head] == nil {
		q.head++
	}
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
		return nil
	}
	return q.items[q.head]
}

// node is one host's resources as the scheduler sees them: exact for the
// local host, a view for a peer (its last load report, minus what was
// placed there since).
type node struct {
	id           string
	total, avail Resources
	// blocked: the node failed to take work; nothing is placed there until
	// its next load report (SetAvailable).
	blocked bool
}

// utilisation is the share of node's busiest resource in use once r is
// placed there (Ray's "critical resource utilisation").
func (n *node) utilisation(r Resources) float64 {
	used := n.total.Clone()
	used.add(n.avail, -1)
	used.add(r, 1)
	u := 0.0
	share := func(used, total int64) {
		if total > 0 {
			u = max(u, float64(used)/float64(total))
		}
	}
	share(used.CPU, n.total.CPU)
	share(used.GPU, n.total.GPU)
	for _, a := range used.Custom {
		share(a.Units, n.total.custom(a.Name))
	}
	return u
}

// Scheduler holds the resources of a host and of its peers, and the queue
// of the tasks it owns that are ready to run. It is not safe for concurrent
// use; the host serialises calls.
type Scheduler[K comparable, V any] struct {
	local  *node
	nodes  []*node // local first, then peers sorted by id
	queues map[string]*queue[K, V]
	index  map[K]*queue[K, V]
	seq    uint64
	queued int
	spread int // rotates ties among equally loaded nodes
}

// New returns a scheduler for a host with total resources.
func New[K comparable, V any](total Resources) *Scheduler[K, V] {
	local := &node{total: total.Clone(), avail: total.Clone()}
	return &Scheduler[K, V]{
		local: local, nodes: []*node{local},
		queues: map[string]*queue[K, V]{}, index: map[K]*queue[K, V]{},
	}
}

// Total returns the host's total resources.
func (s *Scheduler[K, V]) Total() Resources { return s.local.total.Clone() }

// Available returns the host's resources not reserved now.
func (s *Scheduler[K, V]) Available() Resources { return s.local.avail.Clone() }

// Queued is the number of tasks waiting for resources.
func (s *Scheduler[K, V]) Queued() int { return s.queued }

func (s *Scheduler[K, V]) node(id string) *node {
	if id == "" {
		return s.local
	}
	for _, n := range s.nodes[1:] {
		if n.id == id {
			return n
		}
	}
	return nil
}

// SetNode adds a peer or updates its view: its total and free resources.
func (s *Scheduler[K, V]) SetNode(id string, total, avail Resources) {
	if id == "" {
		return
	}
	if n := s.node(id); n != nil {
		n.total, n.avail = total.Clone(), avail.Clone()
		return
	}
	s.nodes = append(s.nodes, &node{id: id, total: total.Clone(), avail: avail.Clone()})
	slices.SortFunc(s.nodes[1:], func(a, b *node) int { return strings.Compare(a.id, b.id) })
}

// SetAvailable updates a peer's free resources from its load report (and
// unblocks it).
func (s *Scheduler[K, V]) SetAvailable(id string, avail Resources) {
	if n := s.node(id); n != nil && n != s.local {
		n.avail = avail.Clone()
		n.blocked = false
	}
}

// Block stops placing tasks on a peer until its next load report: it just
// failed to run one (it may have died, and gossip has not said so yet).
func (s *Scheduler[K, V]) Block(id string) {
	if n := s.node(id); n != nil && n != s.local {
		n.blocked = true
	}
}

// RemoveNode forgets a peer (it left or failed) and returns the queued
// tasks that no node left can run, oldest first. They stay queued (a node
// that fits may join); Remove takes them out.
func (s *Scheduler[K, V]) RemoveNode(id string) []Item[K, V] {
	i := slices.IndexFunc(s.nodes, func(n *node) bool { return n.id == id && n != s.local })
	if i < 0 {
		return nil
	}
	s.nodes = slices.Delete(s.nodes, i, i+1)
	return s.Infeasible()
}

// Infeasible lists the queued tasks that no node known now can run, oldest
// first (Ray's "infeasible demand").
func (s *Scheduler[K, V]) Infeasible() []Item[K, V] {
	var out []Item[K, V]
	for _, q := range s.queues {
		for j := q.head; j < len(q.items); j++ {
			if it := q.items[j]; it != nil && !s.Feasible(it.Req, it.Place) {
				out = append(out, *it)
			}
		}
	}
	slices.SortFunc(out, func(a, b Item[K, V]) int { return int(a.seq - b.seq) })
	return out
}

// Nodes lists the peers' ids.
func (s *Scheduler[K, V]) Nodes() []string {
	out := make([]string, 0, len(s.nodes)-1)
	for _, n := range s.nodes[1:] {
		out = append(out, n.id)
	}
	return out
}

// Feasible reports whether req could ever run on a node pl allows.
func (s *Scheduler[K, V]) Feasible(req Resources, pl Placement) bool {
	if pl.NodeID != "" && !pl.Soft {
		n := s.nodeByName(pl.NodeID)
		return n != nil && req.Fits(n.total)
	}
	for _, n := range s.nodes {
		if req.Fits(n.total) {
			return true
		}
	}
	return false
}

// nodeByName finds a node by id, where the local node answers to its own
// name too (set with SetLocalName).
func (s *Scheduler[K, V]) nodeByName(id string) *node {
	if id == s.local.id {
		return s.local
	}
	return s.node(id)
}

// SetLocalName names the local node, so that node affinity to it works.
func (s *Scheduler[K, V]) SetLocalName(id string) { s.local.id = id }

// Enqueue adds a task. It fails with ErrInfeasible when no node known now
// could run it, so that a host that is alone fails the task instead of
// letting it hang; Park queues it anyway.
func (s *Scheduler[K, V]) Enqueue(key K, req Resources, pl Placement, v V) error {
	if err := s.Check(req, pl); err != nil {
		return err
	}
	s.Park(key, req, pl, v)
	return nil
}

// Hard reports whether pl pins a task to one node (node affinity, not
// soft).
func (p Placement) Hard() bool { return p.NodeID != "" && !p.Soft }

// Check returns ErrInfeasible, saying why, when no node known now could
// run req where pl allows.
func (s *Scheduler[K, V]) Check(req Resources, pl Placement) error {
	if s.Feasible(req, pl) {
		return nil
	}
	if pl.NodeID != "" && !pl.Soft {
		return fmt.Errorf("%w: needs %v on host %q, which is not in the cluster or too small", ErrInfeasible, req, pl.NodeID)
	}
	return fmt.Errorf("%w: needs %v, no host has that much (this one has %v)", ErrInfeasible, req, s.local.total)
}

// Park adds a task to the queue even if no node known now can run it: it
// waits there until one that fits joins (SetNode), as a cluster's hosts
// may (Ray keeps infeasible tasks pending the same way).
func (s *Scheduler[K, V]) Park(key K, req Resources, pl Placement, v V) {
	k := req.key() + pl.key()
	q := s.queues[k]
	if q == nil {
		q = &queue[K, V]{req: req}
		s.queues[k] = q
	}
	s.seq++
	q.items = append(q.items, &Item[K, V]{Key: key, Req: req, Place: pl, Value: v, seq: s.seq})
	s.index[key] = q
	s.queued++
}

// Remove drops a queued task (a cancel); it reports whether it was queued.
func (s *Scheduler[K, V]) Remove(key K) bool {
	q := s.index[key]
	if q == nil {
		return false
	}
	delete(s.index, key)
	for i := q.head; i < len(q.items); i++ {
		if it := q.items[i]; it != nil && it.Key == key {
			q.items[i] = nil
			s.queued--
			return true
		}
	}
	return false
}

// hybridThreshold is the utilisation up to which the default policy packs
// tasks onto the preferred node (Ray's 0.5).
const hybridThreshold = 0.5

// place picks the node for req, or nil if none has room now.
//
// The default policy is Ray's hybrid one: the preferred node (the one that
// holds the most argument bytes, else the local one) takes the task while
// it stays at most half utilised; past that the least utilised node that
// fits does, ties broken by rotation so equal nodes share the work. Spread
// skips the packing. Node affinity runs on its node, waiting while it is
// busy; soft affinity falls back to the default policy when that node is
// gone, unreachable or can never fit the task.
func (s *Scheduler[K, V]) place(req Resources, pl Placement) *node {
	if pl.NodeID != "" {
		n := s.nodeByName(pl.NodeID)
		if n != nil && !n.blocked && req.Fits(n.total) {
			if req.Fits(n.avail) {
				return n
			}
			return nil // busy: wait for it, soft or not (as Ray does)
		}
		if !pl.Soft {
			return nil // wait for that node to come back
		}
	}
	if !pl.Spread {
		pref := s.local
		var most int64
		for _, n := range s.nodes {
			if b := pl.Locality[n.id]; b > most {
				pref, most = n, b
			}
		}
		if !pref.blocked && req.Fits(pref.avail) && pref.utilisation(req) <= hybridThreshold {
			return pref
		}
	}
	var best *node
	bestU := 0.0
	k := len(s.nodes)
	for i := range k {
		n := s.nodes[(i+s.spread)%k]
		if n.blocked || !req.Fits(n.avail) {
			continue
		}
		if u := n.utilisation(req); best == nil || u < bestU {
			best, bestU = n, u
		}
	}
	return best
}

// Next returns the deepest, then earliest-submitted, queued task that fits
// somewhere (Placement.Depth), with the node it goes to, and reserves its
// resources there; ok is false when none fits.
func (s *Scheduler[K, V]) Next() (it Item[K, V], ok bool) {
	var best *queue[K, V]
	var bestItem *Item[K, V]
	var bestNode *node
	for key, q := range s.queues {
		h := q.peek()
		if h == nil {
			delete(s.queues, key) // keep only shapes in use
			continue
		}
		if bestItem != nil && (h.Place.Depth < bestItem.Place.Depth || h.Place.Depth == bestItem.Place.Depth && h.seq > bestItem.seq) {
			continue
		}
		if n := s.place(h.Req, h.Place); n != nil {
			best, bestItem, bestNode = q, h, n
		}
	}
	if best == nil {
		return it, false
	}
	best.items[best.head] = nil
	best.head++
	delete(s.index, bestItem.Key)
	s.queued--
	bestNode.avail.add(bestItem.Req, -1)
	s.spread++ // the next tie goes to the next node
	it = *bestItem
	if bestNode != s.local {
		it.Node = bestNode.id
	}
	return it, true
}

// Follow takes the queued task Next would place first if resources were
// free, when it asks for exactly req, may run on the local host and ok
// accepts its value: it then reserves req on the local host even though
// that takes the host over its total, and returns it. The caller runs it
// after a task holding req ends (a worker's pipeline, Ray's tasks in
// flight per leased worker): the host is over its total only while both
// hold their reservation, and no task of another shape, nor one submitted
// earlier, is passed over. Only a lone host follows (no peers: a peer's
// view of this host must not see it over its total).
func (s *Scheduler[K, V]) Follow(req Resources, ok func(V) bool) (it Item[K, V], found bool) {
	if len(s.nodes) > 1 {
		return it, false
	}
	var best *queue[K, V]
	var bestItem *Item[K, V]
	for _, q := range s.queues {
		h := q.peek()
		if h == nil {
			continue
		}
		if bestItem != nil && (h.Place.Depth < bestItem.Place.Depth || h.Place.Depth == bestItem.Place.Depth && h.seq > bestItem.seq) {
			continue
		}
		best, bestItem = q, h
	}
	if best == nil || !bestItem.Req.Same(req) || !bestItem.Req.Fits(s.local.total) ||
		bestItem.Place.NodeID != "" && bestItem.Place.NodeID != s.local.id || !ok(bestItem.Value) {
		return it, false
	}
	best.items[best.head] = nil
	best.head++
	delete(s.index, bestItem.Key)
	s.queued--
	s.local.avail.add(bestItem.Req, -1)
	return *bestItem, true
}

// FitsReturned reports whether req would fit on the local host if the
// reservations in back were released: whether giving back tasks queued
// behind others (Follow) would free room for one of them to run now.
func (s *Scheduler[K, V]) FitsReturned(req Resources, back []Resources) bool {
	avail := s.local.avail.Clone()
	for _, r := range back {
		avail.add(r, 1)
	}
	return req.Fits(avail)
}

// Overcommitted reports whether the local host has more reserved than its
// total in some resource (Follow, Acquire).
func (s *Scheduler[K, V]) Overcommitted() bool {
	a := s.local.avail
	if a.CPU < 0 || a.GPU < 0 {
		return true
	}
	for _, c := range a.Custom {
		if c.Units < 0 {
			return true
		}
	}
	return false
}

// Release returns resources reserved by Next (or by Acquire) on the local
// host.
func (s *Scheduler[K, V]) Release(r Resources) { s.local.avail.add(r, 1) }

// ReleaseOn returns resources reserved on node ("" is the local host). A
// node that is gone is ignored.
func (s *Scheduler[K, V]) ReleaseOn(id string, r Resources) {
	if n := s.node(id); n != nil {
		n.avail.add(r, 1)
	}
}

// AcquireOn reserves resources on node ("" is the local host) outside the
// queue: an actor that holds its CPUs while it lives. A node that is gone is
// ignored.
func (s *Scheduler[K, V]) AcquireOn(id string, r Resources) {
	if n := s.node(id); n != nil {
		n.avail.add(r, -1)
	}
}

// Acquire takes resources back for a task that was blocked (in Get or Wait)
// and released them. It never waits: a task that resumes may briefly take
// the host over its total, as in Ray, rather than deadlock.
func (s *Scheduler[K, V]) Acquire(r Resources) { s.local.avail.add(r, -1) }
