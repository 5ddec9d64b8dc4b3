package scheduler

import (
	"errors"
	"slices"
	"testing"
)

func res(t testing.TB, cpu, gpu float64, custom map[string]float64) Resources {
	t.Helper()
	r, err := Make(cpu, gpu, custom)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestScheduler(t *testing.T) {
	type step struct {
		op   string // enqueue, next, release, remove, acquire
		key  string
		cpu  float64
		want string // key expected from next ("" = none)
	}
	tests := []struct {
		name  string
		total float64
		steps []step
	}{
		{"fifo within a shape", 1, []step{
			{op: "enqueue", key: "a", cpu: 1}, {op: "enqueue", key: "b", cpu: 1},
			{op: "next", want: "a"}, {op: "next", want: ""},
			{op: "release", cpu: 1}, {op: "next", want: "b"},
		}},
		{"big task does not block small ones", 2, []step{
			{op: "enqueue", key: "small1", cpu: 1}, {op: "next", want: "small1"},
			{op: "enqueue", key: "big", cpu: 2}, {op: "enqueue", key: "small2", cpu: 1},
			{op: "next", want: "small2"}, {op: "next", want: ""},
			{op: "release", cpu: 1}, {op: "release", cpu: 1}, {op: "next", want: "big"},
		}},
		{"fractions add up exactly", 1, []step{
			{op: "enqueue", key: "a", cpu: 0.1}, {op: "enqueue", key: "b", cpu: 0.2}, {op: "enqueue", key: "c", cpu: 0.7},
			{op: "next", want: "a"}, {op: "next", want: "b"}, {op: "next", want: "c"},
		}},
		{"zero cpu always runs", 1, []step{
			{op: "enqueue", key: "a", cpu: 1}, {op: "next", want: "a"},
			{op: "enqueue", key: "z", cpu: 0}, {op: "next", want: "z"},
		}},
		{"removed task never runs", 1, []step{
			{op: "enqueue", key: "a", cpu: 1}, {op: "enqueue", key: "b", cpu: 1},
			{op: "remove", key: "a"}, {op: "next", want: "b"}, {op: "next", want: ""},
		}},
		{"blocked task releases and reacquires", 1, []step{
			{op: "enqueue", key: "parent", cpu: 1}, {op: "next", want: "parent"},
			{op: "enqueue", key: "child", cpu: 1}, {op: "next", want: ""},
			{op: "release", cpu: 1}, {op: "next", want: "child"},
			{op: "acquire", cpu: 1}, {op: "release", cpu: 1}, {op: "release", cpu: 1},
			{op: "enqueue", key: "x", cpu: 1}, {op: "next", want: "x"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New[string, int](res(t, tt.total, 0, nil))
			for i, st := range tt.steps {
				r := res(t, st.cpu, 0, nil)
				switch st.op {
				case "enqueue":
					if err := s.Enqueue(st.key, r, Placement{}, i); err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
				case "next":
					it, ok := s.Next()
					got := ""
					if ok {
						got = it.Key
					}
					if got != st.want {
						t.Fatalf("step %d: next = %q, want %q", i, got, st.want)
					}
				case "release":
					s.Release(r)
				case "acquire":
					s.Acquire(r)
				case "remove":
					if !s.Remove(st.key) {
						t.Fatalf("step %d: remove %q: not queued", i, st.key)
					}
				}
			}
		})
	}
}

func TestInfeasible(t *testing.T) {
	s := New[string, int](res(t, 2, 0, map[string]float64{"disk": 1}))
	tests := []struct {
		name string
		req  Resources
		ok   bool
	}{
		{"fits", res(t, 2, 0, nil), true},
		{"too many cpus", res(t, 3, 0, nil), false},
		{"gpu on a cpu host", res(t, 1, 1, nil), false},
		{"custom present", res(t, 1, 0, map[string]float64{"disk": 1}), true},
		{"custom missing", res(t, 1, 0, map[string]float64{"tpu": 1}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Enqueue(tt.name, tt.req, Placement{}, 0)
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInfeasible)) {
				t.Fatalf("Enqueue = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestMakeRejectsBadAmounts(t *testing.T) {
	// Finer than one Unit would round to nothing: 1e-7 GPUs must not be a
	// task that needs no GPU (Ray refuses precision beyond 0.0001 too).
	for _, x := range []float64{-1, 1e300, 1e-7, 0.00009} {
		if _, err := Make(x, 0, nil); err == nil {
			t.Errorf("Make(%v) succeeded", x)
		}
		if _, err := Make(0, x, nil); err == nil {
			t.Errorf("Make(0, %v) succeeded", x)
		}
		if _, err := Make(0, 0, map[string]float64{"disk": x}); err == nil {
			t.Errorf("custom %v accepted", x)
		}
	}
	for _, x := range []float64{0, 0.0001, 0.5, 3} {
		if _, err := Make(x, x, map[string]float64{"disk": x}); err != nil {
			t.Errorf("Make(%v): %v", x, err)
		}
	}
	if _, err := Make(1, 0, map[string]float64{"CPU": 1}); err == nil {
		t.Error("custom resource named CPU accepted")
	}
}

func BenchmarkEnqueueNext(b *testing.B) {
	one, _ := Make(1, 0, nil)
	total, _ := Make(8, 0, nil)
	s := New[int, struct{}](total)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_ = s.Enqueue(i, one, Placement{}, struct{}{})
		it, _ := s.Next()
		s.Release(it.Req)
		i++
	}
}

// Among the tasks that fit, the deepest goes first, then the earliest: a
// parent blocked in Get gives its CPU to its child, not to the next root.
func TestDeepestFirst(t *testing.T) {
	one, _ := Make(1, 0, nil)
	half, _ := Make(0.5, 0, nil)
	total, _ := Make(1, 0, nil)
	s := New[string, int](total)
	for _, e := range []struct {
		key   string
		req   Resources
		depth int
	}{{"root1", one, 0}, {"root2", one, 0}, {"child1", one, 1}, {"grandchild1", half, 2}, {"child2", half, 1}} {
		if err := s.Enqueue(e.key, e.req, Placement{Depth: e.depth}, 0); err != nil {
			t.Fatal(err)
		}
	}
	var order []string
	for {
		it, ok := s.Next()
		if !ok {
			break
		}
		order = append(order, it.Key)
		s.Release(it.Req)
	}
	want := []string{"grandchild1", "child1", "child2", "root1", "root2"}
	if !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
}

// TestFollow: a task follows one holding the same shape only when it is
// the task Next would place first, may run here, and the caller accepts
// it; it takes the host over its total until the one ahead releases.
func TestFollow(t *testing.T) {
	one, two := res(t, 1, 0, nil), res(t, 2, 0, nil)
	all := func(string) bool { return true }
	tests := []struct {
		name    string
		queue   []string // keys, each of one CPU unless it starts with "big"
		pl      Placement
		req     Resources
		ok      func(string) bool
		peer    bool
		want    string // "" none
		overRes bool   // Overcommitted after
	}{
		{name: "the head of the same shape follows", queue: []string{"a", "b"}, req: one, ok: all, want: "a", overRes: true},
		{name: "another shape's earlier head is not passed over", queue: []string{"big", "a"}, req: one, ok: all},
		{name: "not the shape held", queue: []string{"a"}, req: two, ok: all},
		{name: "the caller refuses it", queue: []string{"a"}, req: one, ok: func(string) bool { return false }},
		{name: "pinned to another host", queue: []string{"a"}, pl: Placement{NodeID: "other"}, req: one, ok: all},
		{name: "pinned here", queue: []string{"a"}, pl: Placement{NodeID: "here"}, req: one, ok: all, want: "a", overRes: true},
		{name: "a host with peers never follows", queue: []string{"a"}, req: one, ok: all, peer: true},
		{name: "nothing queued", req: one, ok: all},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New[string, string](one)
			s.SetLocalName("here")
			if tt.peer {
				s.SetNode("peer", one, Resources{})
			}
			if _, ok := s.Next(); ok {
				t.Fatal("Next with nothing queued")
			}
			s.Acquire(one) // the task ahead holds the one CPU
			for _, k := range tt.queue {
				r := one
				if k == "big" {
					r = two // parked: it waits, as an infeasible task in a cluster
				}
				s.Park(k, r, tt.pl, k)
			}
			queued := s.Queued()
			it, ok := s.Follow(tt.req, tt.ok)
			if got := map[bool]string{true: it.Key}[ok]; got != tt.want {
				t.Fatalf("Follow = %q, want %q", got, tt.want)
			}
			if ok && s.Queued() != queued-1 {
				t.Fatalf("Queued %d after Follow, want %d", s.Queued(), queued-1)
			}
			if got := s.Overcommitted(); got != tt.overRes {
				t.Fatalf("Overcommitted = %v, want %v", got, tt.overRes)
			}
			if ok {
				s.Release(one) // the task ahead ends: the one behind holds what it held
				if s.Overcommitted() || s.Available().CPU != 0 {
					t.Fatalf("available %v once the task ahead released", s.Available())
				}
			}
		})
	}
}

// TestFitsReturned: tasks queued behind others are given back only when
// that frees room for one of them to run now.
func TestFitsReturned(t *testing.T) {
	one, two := res(t, 1, 0, nil), res(t, 2, 0, nil)
	tests := []struct {
		name string
		held []Resources // running tasks, then queued ones (Follow)
		back []Resources // the queued ones that would be given back
		req  Resources
		fits bool
	}{
		{name: "both CPUs run tasks, queues behind each", held: []Resources{one, one, one, one, one}, back: []Resources{one, one, one}, req: one},
		{name: "one CPU free, three queued behind the other", held: []Resources{one, one, one, one}, back: []Resources{one, one, one}, req: one, fits: true},
		{name: "one CPU free, nothing to give back", held: []Resources{one}, req: one, fits: true},
		{name: "a task of two CPUs queued: one free is not enough", held: []Resources{one, one}, back: []Resources{one}, req: two},
		{name: "nothing runs", back: nil, req: two, fits: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New[string, string](two)
			for _, r := range tt.held {
				s.Acquire(r)
			}
			before := s.Available()
			if got := s.FitsReturned(tt.req, tt.back); got != tt.fits {
				t.Fatalf("FitsReturned = %v, want %v", got, tt.fits)
			}
			if after := s.Available(); after.CPU != before.CPU {
				t.Fatalf("FitsReturned changed the available CPUs: %v → %v", before, after)
			}
		})
	}
}
