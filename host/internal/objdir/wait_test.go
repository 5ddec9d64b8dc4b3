package objdir

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// waitResult is what a WaitReady or Get in the background returned.
type waitResult struct {
	ready []bool
	vals  []abi.Value
	err   error
}

func waitInBackground(d *Dir, ctx context.Context, refs []ids.ObjectID, need int, failFast bool, timeout time.Duration, cancel <-chan struct{}) <-chan waitResult {
	ch := make(chan waitResult, 1)
	go func() {
		r, err := d.WaitReady(ctx, refs, need, failFast, timeout, cancel)
		ch <- waitResult{ready: r, err: err}
	}()
	return ch
}

func receive(t *testing.T, ch <-chan waitResult) waitResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(hangGuard):
		t.Fatal("a wait did not end")
		return waitResult{}
	}
}

// pendingWaiters counts the live waiters on id.
func pendingWaiters(d *Dir, id ids.ObjectID) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	if ob := d.m[id]; ob != nil {
		for _, w := range ob.waiters {
			if !w.dead {
				n++
			}
		}
	}
	return n
}

// awaitWaiters blocks until id has n live waiters (a background wait has
// registered), polling the table.
func awaitWaiters(t *testing.T, d *Dir, id ids.ObjectID, n int) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for pendingWaiters(d, id) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s never had %d waiters", id, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWaitReady(t *testing.T) {
	task := ids.NewTaskID()
	a, b, c := task.Return(0), task.Return(1), task.Return(2)
	failure := (&abi.TaskError{Kind: abi.ErrorApplication, Message: "boom"}).Encode()
	cases := []struct {
		name     string
		need     int
		failFast bool
		seal     map[ids.ObjectID]abi.Value // sealed once the wait is registered
		want     []bool
	}{
		{"need one of three", 1, false, map[ids.ObjectID]abi.Value{b: jsonValue("1")}, []bool{false, true, false}},
		{"need all", 3, false, map[ids.ObjectID]abi.Value{a: jsonValue("1"), b: jsonValue("2"), c: jsonValue("3")}, []bool{true, true, true}},
		{"fail fast on a failure", 3, true, map[ids.ObjectID]abi.Value{c: failure}, []bool{false, false, true}},
		{"a failure counts as ready", 1, false, map[ids.ObjectID]abi.Value{a: failure}, []bool{true, false, false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := newDir(t, nil, nil)
			refs := []ids.ObjectID{a, b, c}
			for _, id := range refs {
				d.Expect(id, task)
			}
			ch := waitInBackground(d, ctxFor(t), refs, tc.need, tc.failFast, -1, nil)
			for _, id := range refs {
				awaitWaiters(t, d, id, 1)
			}
			for id, v := range tc.seal {
				if err := d.Seal(ctxFor(t), id, v); err != nil {
					t.Fatal(err)
				}
			}
			r := receive(t, ch)
			if r.err != nil || !slices.Equal(r.ready, tc.want) {
				t.Fatalf("ready %v, %v; want %v", r.ready, r.err, tc.want)
			}
			for _, id := range refs {
				if n := pendingWaiters(d, id); n != 0 {
					t.Fatalf("%d waiters left on %s after the wait", n, id)
				}
			}
		})
	}
}

// TestWaitEnds: a wait ends on its timeout (with what is ready), its
// cancel channel, or its context, and leaves no waiter behind.
func TestWaitEnds(t *testing.T) {
	d := newDir(t, nil, nil)
	task := ids.NewTaskID()
	ready, pending := task.Return(0), task.Return(1)
	d.Expect(pending, task)
	if err := d.Seal(ctxFor(t), ready, jsonValue("1")); err != nil {
		t.Fatal(err)
	}
	refs := []ids.ObjectID{ready, pending}

	r, err := d.WaitReady(ctxFor(t), refs, 2, true, 0, nil)
	if !errors.Is(err, ErrTimeout) || !slices.Equal(r, []bool{true, false}) {
		t.Fatalf("timeout 0: %v %v", r, err)
	}
	r, err = d.WaitReady(ctxFor(t), refs, 2, true, time.Millisecond, nil)
	if !errors.Is(err, ErrTimeout) || !slices.Equal(r, []bool{true, false}) {
		t.Fatalf("a short timeout: %v %v", r, err)
	}

	cancel := make(chan struct{})
	ch := waitInBackground(d, ctxFor(t), refs, 2, true, -1, cancel)
	awaitWaiters(t, d, pending, 1)
	close(cancel)
	if r := receive(t, ch); !errors.Is(r.err, ErrCancelled) {
		t.Fatalf("a cancelled wait: %v", r.err)
	}

	ctx, stop := context.WithCancel(ctxFor(t))
	ch = waitInBackground(d, ctx, refs, 2, true, -1, nil)
	awaitWaiters(t, d, pending, 1)
	stop()
	if r := receive(t, ch); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("a wait whose context ended: %v", r.err)
	}
	// A context ended with a cause (the host shutting down) says so.
	shutdown := errors.New("shutting down")
	cctx, stopWhy := context.WithCancelCause(ctxFor(t))
	ch = waitInBackground(d, cctx, refs, 2, true, -1, nil)
	awaitWaiters(t, d, pending, 1)
	stopWhy(shutdown)
	if r := receive(t, ch); r.err != shutdown {
		t.Fatalf("a wait whose context ended with a cause: %v", r.err)
	}

	if _, err := d.Get(ctxFor(t), refs, 0, nil); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Get past its timeout: %v", err)
	}
	if n := pendingWaiters(d, pending); n != 0 {
		t.Fatalf("%d waiters left behind", n)
	}
	// The skipped waiters never fire: sealing now wakes nobody.
	if err := d.Seal(ctxFor(t), pending, jsonValue("2")); err != nil {
		t.Fatal(err)
	}
}

// TestGetFailsFast: a Get returns as soon as one object failed, with that
// failure in every slot not ready yet; the others keep their values.
func TestGetFailsFast(t *testing.T) {
	d := newDir(t, nil, nil)
	task := ids.NewTaskID()
	ok, pending, failed := task.Return(0), task.Return(1), task.Return(2)
	d.Expect(pending, task)
	_ = d.Seal(ctxFor(t), ok, jsonValue(`"ok"`))
	_ = d.Seal(ctxFor(t), failed, (&abi.TaskError{Kind: abi.ErrorApplication, Message: "boom"}).Encode())
	vals, err := d.Get(ctxFor(t), []ids.ObjectID{ok, pending, failed}, -1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(vals[0].Data) != `"ok"` {
		t.Fatalf("the ready value: %q", vals[0].Data)
	}
	wantError(t, vals[1], abi.ErrorApplication)
	wantError(t, vals[2], abi.ErrorApplication)
	if !d.Fetched(ok) || !d.Fetched(failed) || d.Fetched(pending) {
		t.Fatal("Get marked the wrong objects fetched")
	}
}

// TestOnReady: a callback on a ready object runs at once, one on a pending
// object when it is sealed, with the value; a large value's callback gets
// its codec only.
func TestOnReady(t *testing.T) {
	st := newDir(t, nil, nil)
	task := ids.NewTaskID()
	small, large := task.Return(0), task.Return(1)
	st.Expect(small, task)
	got := make(chan abi.Value, 2)
	if err := st.OnReady(ctxFor(t), small, func(v abi.Value) { got <- v }); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-got:
		t.Fatalf("a callback ran before the seal: %v", v)
	default:
	}
	_ = st.Seal(ctxFor(t), small, jsonValue("3"))
	if v := <-got; string(v.Data) != "3" {
		t.Fatalf("callback value %q", v.Data)
	}
	_ = st.Seal(ctxFor(t), large, rawValue(40, 'x'))
	if err := st.OnReady(ctxFor(t), large, func(v abi.Value) { got <- v }); err != nil {
		t.Fatal(err)
	}
	if v := <-got; v.Codec != abi.CodecRaw || v.Data != nil {
		t.Fatalf("a large value's callback got %s with %d bytes", v.Codec, len(v.Data))
	}
}

// TestWaitSatisfiedLeavesNoWaiters: a Wait that finds enough refs ready
// registers nothing on the others (a loop of Wait(refs, 1) over many
// refs would otherwise leave a cancelled waiter per call on each).
func TestWaitSatisfiedLeavesNoWaiters(t *testing.T) {
	d := newDir(t, nil, nil)
	task := ids.NewTaskID()
	done, pending := task.Return(0), task.Return(1)
	d.Expect(done, task)
	d.Expect(pending, task)
	if err := d.Seal(ctxFor(t), done, rawValue(8, 'd')); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		ready, err := d.WaitReady(ctxFor(t), []ids.ObjectID{pending, done}, 1, false, -1, nil)
		if err != nil || !slices.Equal(ready, []bool{false, true}) {
			t.Fatalf("WaitReady = %v, %v; want [false true]", ready, err)
		}
	}
	d.mu.Lock()
	n := len(d.m[pending].waiters)
	d.mu.Unlock()
	if n != 0 {
		t.Fatalf("the pending ref has %d waiters (dead or alive) after waits that it did not end", n)
	}
}
