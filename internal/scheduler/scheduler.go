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

// FromFloat converts a resource count (1.5 CPUs) to Units.
func FromFloat(x float64) (int64, error) {
	if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 || x > 1e12 {
		return 0, fmt.Errorf("scheduler: invalid resource amount %v", x)
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
// caller (the host keeps its task in Value).
type Item[K comparable, V any] struct {
	Key   K
	Req   Resources
	Value V
	seq   uint64
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

// Scheduler holds a host's resources and its queue of runnable tasks. It is
// not safe for concurrent use; the host serialises calls.
type Scheduler[K comparable, V any] struct {
	total, avail Resources
	queues       map[string]*queue[K, V]
	index        map[K]*queue[K, V]
	seq          uint64
	queued       int
}

// New returns a scheduler for a host with total resources.
func New[K comparable, V any](total Resources) *Scheduler[K, V] {
	return &Scheduler[K, V]{
		total: total.Clone(), avail: total.Clone(),
		queues: map[string]*queue[K, V]{}, index: map[K]*queue[K, V]{},
	}
}

// Total returns the host's total resources.
func (s *Scheduler[K, V]) Total() Resources { return s.total.Clone() }

// Available returns the resources not reserved now.
func (s *Scheduler[K, V]) Available() Resources { return s.avail.Clone() }

// Queued is the number of tasks waiting for resources.
func (s *Scheduler[K, V]) Queued() int { return s.queued }

// Feasible reports whether req could ever run on this host.
func (s *Scheduler[K, V]) Feasible(req Resources) bool { return req.Fits(s.total) }

// Enqueue adds a task. It fails with ErrInfeasible when the host could never
// run it, so that the caller fails the task instead of letting it hang.
func (s *Scheduler[K, V]) Enqueue(key K, req Resources, v V) error {
	if !s.Feasible(req) {
		return fmt.Errorf("%w: needs %v, host has %v", ErrInfeasible, req, s.total)
	}
	k := req.key()
	q := s.queues[k]
	if q == nil {
		q = &queue[K, V]{req: req}
		s.queues[k] = q
	}
	s.seq++
	q.items = append(q.items, &Item[K, V]{Key: key, Req: req, Value: v, seq: s.seq})
	s.index[key] = q
	s.queued++
	return nil
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

// Next returns the earliest-submitted queued task that fits the available
// resources and reserves them; ok is false when none fits.
func (s *Scheduler[K, V]) Next() (it Item[K, V], ok bool) {
	var best *queue[K, V]
	var bestItem *Item[K, V]
	for _, q := range s.queues {
		h := q.peek()
		if h == nil || !h.Req.Fits(s.avail) {
			continue
		}
		if bestItem == nil || h.seq < bestItem.seq {
			best, bestItem = q, h
		}
	}
	if best == nil {
		return it, false
	}
	best.items[best.head] = nil
	best.head++
	delete(s.index, bestItem.Key)
	s.queued--
	s.avail.add(bestItem.Req, -1)
	return *bestItem, true
}

// Release returns resources reserved by Next (or by Acquire).
func (s *Scheduler[K, V]) Release(r Resources) { s.avail.add(r, 1) }

// Acquire takes resources back for a task that was blocked (in Get or Wait)
// and released them. It never waits: a task that resumes may briefly take
// the host over its total, as in Ray, rather than deadlock.
func (s *Scheduler[K, V]) Acquire(r Resources) { s.avail.add(r, -1) }
