package owner

import (
	"testing"
	"time"

	"github.com/rayhost/rayhost/host/internal/refcount"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/testutil/build"
	"github.com/rayhost/rayhost/store"
)

// waitUntil polls cond until it holds (the frees run behind the results
// they follow), failing the test at the hang guard.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(build.HangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited in vain for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestRefsFreeWhatAnAttemptHeld: the results of the children a task
// submitted, held by its attempt, are freed — from memory and the store —
// once it ends; reading one then says it was freed. The task's own result,
// handed to the client, stays.
func TestRefsFreeWhatAnAttemptHeld(t *testing.T) {
	var st *store.Memory
	f := newFixture(t, func(c *Config) { st = store.NewMemory(); c.Store = st })
	const n = 20
	parent, refs := f.submit(t, "nested_sum", nil, n)
	var sum int
	f.result(t, refs[0], &sum)
	if sum != n*(n-1) {
		t.Fatalf("nested_sum(%d) = %d", n, sum)
	}
	child := parent.ChildOf(0, 3).Return(0)
	waitUntil(t, "the children's results to be freed", func() bool { return !f.o.objs.Known(hangCtx(t), child) })
	if te := f.failure(t, child); te.Kind != abi.ErrorObjectFreed {
		t.Fatalf("a freed child's result reads as %s: %s", te.Kind, te.Message)
	}
	if s := f.o.refs.stats(); s.Objects != 1 || s.Freed < n {
		t.Fatalf("counter after the task: %+v, want only its own result, %d freed", s, n)
	}
	waitUntil(t, "the store to hold only the task's result", func() bool { return st.Len() == 1 })
	var again int
	f.result(t, refs[0], &again) // the client's ref still reads
}

// TestRefsKeepWhatAResultContains: a task that returns the ref of an
// object it put keeps that object alive after the task ended (its result
// contains it); freeing is by reachability, not by who made it.
func TestRefsKeepWhatAResultContains(t *testing.T) {
	f := newFixture(t, nil)
	task, refs := f.submit(t, "put_bytes", nil, 16)
	var r struct {
		ObjectID string `json:"object_id"`
	}
	if v := f.value(t, refs[0]); v.Codec != abi.CodecCBOR {
		t.Fatalf("the result's codec is %v, want cbor (the ref inside it a tag)", v.Codec)
	}
	f.result(t, refs[0], &r)
	put, err := ids.ParseObjectID(r.ObjectID)
	if err != nil || put != task.Put(0) {
		t.Fatalf("put_bytes returned %q (%v), want its put %s", r.ObjectID, err, task.Put(0))
	}
	attempt := refcount.Holder("task:" + task.String() + "/0")
	waitUntil(t, "the attempt's refs to be released", func() bool {
		f.o.refs.mu.Lock()
		defer f.o.refs.mu.Unlock()
		return f.o.refs.c.Holds(attempt, put) == 0
	})
	if v := f.value(t, put); v.Codec != abi.CodecRaw || len(v.Data) != 16 {
		t.Fatalf("the contained put reads %v %q", v.Codec, v.Data)
	}
	if s := f.o.refs.stats(); s.Objects != 2 {
		t.Fatalf("counter: %+v, want the result and the put it contains", s)
	}
}

// TestRefsArgumentsLiveWhileTheirTaskRuns: an object passed by reference
// stays while the task that takes it waits and runs, though its maker's
// attempt has ended.
func TestRefsArgumentsLiveWhileTheirTaskRuns(t *testing.T) {
	f := newFixture(t, nil)
	_, in := f.submit(t, "add", nil, 20, 22)
	_, out := f.submit(t, "add", nil, ref{in[0]}, 0)
	var got int
	f.result(t, out[0], &got)
	if got != 42 {
		t.Fatalf("add(ref, 0) = %d", got)
	}
	if !f.o.objs.Known(hangCtx(t), in[0]) {
		t.Fatal("the argument, still held by the client, was freed")
	}
}

// TestRefsGuestReleases: a running guest gives refs back — ray.Release at
// once, dropped refs through the garbage collector — and the host frees
// them before the task ends.
func TestRefsGuestReleases(t *testing.T) {
	f := newFixture(t, nil)
	var freed int
	f.call(t, "release_refs", &freed, 300)
	if freed == 0 {
		t.Fatal("none of 300 dropped refs was freed while their task ran")
	}
	t.Logf("%d of 300 dropped refs were freed while the task ran", freed)
}

// TestRefsActorKeepsWhatItsStateHolds: refs an actor received and kept in
// its state stay alive after the tasks that made them ended.
func TestRefsActorKeepsWhatItsStateHolds(t *testing.T) {
	f := newFixture(t, nil)
	var sum int
	f.call(t, "actor_keeps_refs", &sum)
	if sum != 7 {
		t.Fatalf("the actor's stashed refs sum to %d, want 7", sum)
	}
}

// TestAttackReleaseOthersRefs: a hostile guest that releases an object it
// does not hold (with the largest count), sends malformed and oversized
// releases, frees nothing: the victim still reads, and the host serves.
func TestAttackReleaseOthersRefs(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxArgBytes = 1 << 20 }) // the oversized release is 4 MiB
	attacker, err := f.api.RegisterModule(hangCtx(t), build.Guest(t, "./host/testdata/attacker"), "", false)
	if err != nil {
		t.Fatal(err)
	}
	victim := ids.NewTaskID().Put(0)
	if err := f.api.Put(hangCtx(t), testCaller, victim, abi.Value{Codec: abi.CodecJSON, Data: []byte("7")}); err != nil {
		t.Fatal(err)
	}
	_, refs := f.submitTo(t, attacker.Digest, "release_other", victim.String())
	var codes []int64
	f.result(t, refs[0], &codes)
	if len(codes) != 3 || codes[0] != 0 || codes[1] != int64(abi.ErrCodeBadRequest) || codes[2] != int64(abi.ErrCodeTooLarge) {
		t.Fatalf("release codes %v, want [0 (pipelined) bad_request too_large]", codes)
	}
	if v := f.value(t, victim); string(v.Data) != "7" {
		t.Fatalf("the victim reads %v %q after the attack", v.Codec, v.Data)
	}
	var sum int
	f.call(t, "add", &sum, 1, 2)
	if sum != 3 {
		t.Fatal("the host does not serve after the attack")
	}
}

// submitTo is submit to another module than the test guest.
func (f *fixture) submitTo(t testing.TB, mod, fn string, args ...any) (ids.TaskID, []ids.ObjectID) {
	t.Helper()
	saved := f.mod
	f.mod = mod
	defer func() { f.mod = saved }()
	return f.submit(t, fn, nil, args...)
}

// TestGuestGetCache: a guest that reads the same small object again and
// again asks the host once (guest-sdk/ray/getcache.go); a large value and
// one that holds a ref are asked every time (the first would pin memory,
// the second must be counted by the host as it is sent). The guest's
// copies are its own, and a Get after Release asks the host, which says
// the object was freed.
func TestGuestGetCache(t *testing.T) {
	f := newFixture(t, nil)
	const n = 20
	before := f.o.gops.gets.Load()
	var got string
	f.call(t, "get_again", &got, n)
	if got != "after release: true" {
		t.Fatalf("get_again: %q", got)
	}
	// Host Gets: the small value once, the large value and the holder
	// each time, the ref inside the holder once (its handle is the one
	// the guest's own ref has), the small value after Release.
	gets := f.o.gops.gets.Load() - before
	if gets < 2*n || gets > 2*n+3 {
		t.Fatalf("the guest asked the host %d times for %d reads of 4 refs, want %d..%d", gets, 4*n, 2*n, 2*n+3)
	}
}
