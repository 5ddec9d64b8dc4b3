//go:build !wasip1

package ray

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// Remote functions for the local-mode tests; names start with "lt." so they
// do not meet other tests' registrations.
var (
	ltAdd    = Func2("lt.add", func(ctx context.Context, a, b int) (int, error) { return a + b, nil })
	ltConcat = Func2("lt.concat", func(ctx context.Context, a string, b []byte) (string, error) { return a + string(b), nil })
	ltSum    = FuncN("lt.sum", func(ctx context.Context, xs ...float64) (float64, error) {
		var s float64
		for _, x := range xs {
			s += x
		}
		return s, nil
	})
	ltFail = Func1("lt.fail", func(ctx context.Context, msg string) (int, error) {
		return 0, WithCode("E42", errors.New(msg))
	})
	ltPanic  = Func0("lt.panic", func(ctx context.Context) (int, error) { panic("boom") })
	ltDivMod = Func1x2("lt.divmod", func(ctx context.Context, ab [2]int) (int, int, error) { return ab[0] / ab[1], ab[0] % ab[1], nil })
	ltTriple = Func0x3("lt.triple", func(ctx context.Context) (string, int, bool, error) { return "x", 7, true, nil })
	// ltTree sums 1..n by submitting a child for n-1: nested tasks.
	ltTree *Function[int]
	// ltBlock waits until it is cancelled.
	ltBlock = Func0("lt.block", func(ctx context.Context) (int, error) {
		ltBlockStarted <- struct{}{}
		err := Sleep(ctx, time.Hour)
		return 0, err
	})
	ltBlockStarted = make(chan struct{}, 16)
	ltFlakyRuns    atomic.Int32
	ltFlaky        = Func0("lt.flaky", func(ctx context.Context) (int, error) {
		ltFlakyRuns.Add(1)
		if Attempt(ctx) < 2 {
			return 0, WithCode("flaky", errors.New("not yet"))
		}
		return Attempt(ctx), nil
	})
	ltCount = Gen1("lt.count", func(ctx context.Context, n int, yield func(int) error) error {
		for i := range n {
			if err := yield(i); err != nil {
				return err
			}
		}
		if n == 3 {
			return errors.New("three is too many")
		}
		return nil
	})
	ltBP         = Gen0("lt.bp", func(ctx context.Context, yield func(int) error) error { return ltBPBody(ctx, yield) }, Backpressure(1))
	ltBPProduced atomic.Int32
	// ltForever yields until yield fails (it was cancelled).
	ltForever = Gen0("lt.forever", func(ctx context.Context, yield func(int) error) error {
		for i := 0; ; i++ {
			if err := yield(i); err != nil {
				ltForeverStopped <- err
				return err
			}
		}
	}, Backpressure(4))
	ltForeverStopped = make(chan error, 1)

	ltCounter = Actor1("lt.Counter", func(ctx context.Context, start int) (*ltCounterState, error) {
		if start < 0 {
			return nil, errors.New("negative start")
		}
		return &ltCounterState{n: start}, nil
	}, MaxRestarts(1))
	ltIncr = Method1(ltCounter, "incr", func(c *ltCounterState, ctx context.Context, by int) (int, error) {
		c.n += by
		c.log = append(c.log, c.n)
		return c.n, nil
	})
	ltLog  = Method0(ltCounter, "log", func(c *ltCounterState, ctx context.Context) ([]int, error) { return c.log, nil })
	ltHang = Method0(ltCounter, "hang", func(c *ltCounterState, ctx context.Context) (int, error) {
		ltBlockStarted <- struct{}{}
		return 0, Sleep(ctx, time.Hour)
	})
)

type ltCounterState struct {
	n   int
	log []int
}

func ltBPBody(ctx context.Context, yield func(int) error) error {
	for i := range 5 {
		ltBPProduced.Store(int32(i + 1))
		if err := yield(i); err != nil {
			return err
		}
	}
	return nil
}

func init() {
	ltTree = Func1("lt.tree", func(ctx context.Context, n int) (int, error) {
		if n <= 1 {
			return n, nil
		}
		rest, err := Get(ctx, ltTree.Remote(n-1))
		return n + rest, err
	})
}

func runLocal(t *testing.T, driver func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard only
	defer cancel()
	if err := RunLocal(ctx, driver); err != nil {
		t.Fatal(err)
	}
}

func TestLocalMode(t *testing.T) {
	cases := []struct {
		name   string
		driver func(ctx context.Context) error
	}{
		{"values and refs as arguments", func(ctx context.Context) error {
			a := ltAdd.Remote(1, 2)
			b := ltAdd.Remote(a, Put(10)) // refs wait for their values
			got, err := Get(ctx, b)
			if err != nil || got != 13 {
				return fmt.Errorf("got %d, %v; want 13", got, err)
			}
			s, err := Get(ctx, ltConcat.Remote("a", []byte("b")))
			if err != nil || s != "ab" {
				return fmt.Errorf("concat = %q, %v", s, err)
			}
			return nil
		}},
		{"numbers fit any numeric parameter", func(ctx context.Context) error {
			got, err := Get(ctx, ltSum.Remote(1, int64(2), 0.5, Put(uint8(4))))
			if err != nil || got != 7.5 {
				return fmt.Errorf("sum = %v, %v", got, err)
			}
			return nil
		}},
		{"multiple returns", func(ctx context.Context) error {
			q, r := ltDivMod.Remote([2]int{17, 5})
			qs, err := Get(ctx, q)
			rs, err2 := Get(ctx, r)
			if err != nil || err2 != nil || qs != 3 || rs != 2 {
				return fmt.Errorf("divmod = %d, %d (%v, %v)", qs, rs, err, err2)
			}
			x, y, z := ltTriple.Remote()
			xs, _ := Get(ctx, x)
			ys, _ := Get(ctx, y)
			zs, err := Get(ctx, z)
			if xs != "x" || ys != 7 || !zs || err != nil {
				return fmt.Errorf("triple = %q %d %v %v", xs, ys, zs, err)
			}
			return nil
		}},
		{"nested tasks", func(ctx context.Context) error {
			got, err := Get(ctx, ltTree.Remote(20))
			if err != nil || got != 210 {
				return fmt.Errorf("tree(20) = %d, %v", got, err)
			}
			return nil
		}},
		{"GetAll and Wait", func(ctx context.Context) error {
			refs := []ObjectRef[int]{ltAdd.Remote(1, 1), ltAdd.Remote(2, 2), ltAdd.Remote(3, 3)}
			all, err := GetAll(ctx, refs)
			if err != nil || !slices.Equal(all, []int{2, 4, 6}) {
				return fmt.Errorf("GetAll = %v, %v", all, err)
			}
			ready, notReady, err := Wait(ctx, refs, 3, -1)
			if err != nil || len(ready) != 3 || len(notReady) != 0 {
				return fmt.Errorf("Wait = %v %v %v", ready, notReady, err)
			}
			blocked := ltBlock.Remote()
			<-ltBlockStarted
			ready, notReady, err = Wait(ctx, []ObjectRef[int]{blocked, refs[0]}, 2, 10*time.Millisecond)
			if err != nil || len(ready) != 1 || ready[0] != refs[0] || len(notReady) != 1 || notReady[0] != blocked {
				return fmt.Errorf("Wait with one blocked = %v %v %v", ready, notReady, err)
			}
			return Cancel(blocked, false, false)
		}},
		{"Get honours ctx's deadline", func(ctx context.Context) error {
			blocked := ltBlock.Remote()
			<-ltBlockStarted
			short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
			defer cancel()
			if _, err := Get(short, blocked); !errors.Is(err, ErrGetTimeout) {
				return fmt.Errorf("Get past the deadline = %v; want ErrGetTimeout", err)
			}
			return Cancel(blocked, false, false)
		}},
		{"errors are TaskErrors", func(ctx context.Context) error {
			_, err := Get(ctx, ltFail.Remote("nope"))
			var te *TaskError
			if !errors.As(err, &te) || te.Kind != "application" || te.Message != "nope" || te.Code != "E42" ||
				te.Function != "lt.fail" || te.Host != LocalOwner || !errors.Is(err, ErrTaskFailed) {
				return fmt.Errorf("application error = %#v", err)
			}
			_, err = Get(ctx, ltPanic.Remote())
			if !errors.As(err, &te) || te.Kind != "panic" || te.Message != "boom" || !strings.Contains(te.Stack, "local_test.go") {
				return fmt.Errorf("panic = %#v", err)
			}
			_, err = Get(ctx, ltAdd.Remote(ltFail.Remote("first"), 1))
			if !errors.As(err, &te) || te.Kind != "dependency" || te.Cause == nil || te.Cause.Message != "first" {
				return fmt.Errorf("dependency = %#v", err)
			}
			if r := ltAdd.Remote("one", 2); !errors.Is(r.Err(), ErrBadArgument) {
				return fmt.Errorf("wrong type: %v", r.Err())
			}
			if r := ltAdd.Remote(1); !errors.Is(r.Err(), ErrBadArgument) {
				return fmt.Errorf("wrong count: %v", r.Err())
			}
			if _, err := Get(ctx, ltAdd.Remote(Put("x"), 1)); !errors.Is(err, ErrBadArgument) {
				return fmt.Errorf("ObjectRef of the wrong type: %v", err)
			}
			return nil
		}},
		{"retries of application errors", func(ctx context.Context) error {
			ltFlakyRuns.Store(0)
			if _, err := Get(ctx, ltFlaky.Remote()); err == nil { // no RetryExceptions: one run
				return errors.New("flaky succeeded without retries")
			}
			if n := ltFlakyRuns.Load(); n != 1 {
				return fmt.Errorf("%d runs without retries", n)
			}
			got, err := Get(ctx, ltFlaky.Options(RetryExceptions("flaky")).Remote())
			if err != nil || got != 2 {
				return fmt.Errorf("with retries: %d, %v", got, err)
			}
			_, err = Get(ctx, ltFlaky.Options(RetryExceptions(), MaxRetries(1)).Remote())
			var te *TaskError
			if !errors.As(err, &te) || te.Attempt != 2 {
				return fmt.Errorf("out of retries: %v", err)
			}
			return nil
		}},
		{"generators", func(ctx context.Context) error {
			var got []int
			for ref, err := range ltCount.Remote(4).All(ctx) {
				if err != nil {
					return err
				}
				v, err := Get(ctx, ref)
				if err != nil {
					return err
				}
				got = append(got, v)
			}
			if !slices.Equal(got, []int{0, 1, 2, 3}) {
				return fmt.Errorf("items %v", got)
			}
			g := ltCount.Remote(3) // fails after its items
			var errs []error
			for ref, err := range g.All(ctx) {
				if err == nil {
					_, err = Get(ctx, ref)
				}
				errs = append(errs, err)
			}
			var te *TaskError
			if len(errs) != 4 || errs[2] != nil || !errors.As(errs[3], &te) || te.Message != "three is too many" {
				return fmt.Errorf("failing generator: %v", errs)
			}
			if _, err := g.Next(ctx); !errors.Is(err, ErrEndOfStream) {
				return fmt.Errorf("after the failure: %v", err)
			}
			end := ltCount.Remote(0)
			ready, _, err := Wait(ctx, []ObjectRef[int]{end.NextRef()}, 1, -1)
			if err != nil || len(ready) != 1 {
				return fmt.Errorf("Wait on the end: %v %v", ready, err)
			}
			return nil
		}},
		{"cancelling a generator stops its yields", func(ctx context.Context) error {
			g := ltForever.Remote()
			if _, err := g.Next(ctx); err != nil {
				return err
			}
			if err := Cancel(g.NextRef(), false, false); err != nil {
				return err
			}
			if err := <-ltForeverStopped; !errors.Is(err, ErrTaskCancelled) {
				return fmt.Errorf("yield after cancel: %v", err)
			}
			for ref, err := range g.All(ctx) {
				if err == nil {
					_, err = Get(ctx, ref)
				}
				if err != nil {
					if !errors.Is(err, ErrTaskCancelled) {
						return fmt.Errorf("stream after cancel: %v", err)
					}
					return nil
				}
			}
			return errors.New("the stream of a cancelled generator ended without its cancellation")
		}},
		{"backpressure", func(ctx context.Context) error {
			g := ltBP.Remote()
			first, err := g.Next(ctx)
			if err != nil {
				return err
			}
			// Item 0 is consumed; the generator may yield item 1, then
			// must wait until it is consumed too.
			if _, _, err := Wait(ctx, []ObjectRef[int]{g.NextRef()}, 1, -1); err != nil {
				return err
			}
			time.Sleep(20 * time.Millisecond) // give a wrong generator time to run ahead
			if n := ltBPProduced.Load(); n != 2 {
				return fmt.Errorf("generator produced %d items with one consumed; want 2", n)
			}
			if v, err := Get(ctx, first); err != nil || v != 0 {
				return fmt.Errorf("first = %d, %v", v, err)
			}
			n := 1
			for _, err := range g.All(ctx) {
				if err != nil {
					return err
				}
				n++
			}
			if n != 5 {
				return fmt.Errorf("%d items", n)
			}
			return nil
		}},
		{"actors run their calls one at a time, in order", func(ctx context.Context) error {
			c := ltCounter.Remote(100)
			if err := c.Ready(ctx); err != nil {
				return err
			}
			refs := make([]ObjectRef[int], 50)
			for i := range refs {
				refs[i] = ltIncr.Remote(c, 1)
			}
			last, err := Get(ctx, refs[len(refs)-1])
			if err != nil || last != 150 {
				return fmt.Errorf("last = %d, %v", last, err)
			}
			log, err := Get(ctx, ltLog.Remote(c))
			want := make([]int, 50)
			for i := range want {
				want[i] = 101 + i
			}
			if err != nil || !slices.Equal(log, want) {
				return fmt.Errorf("log %v, %v", log, err)
			}
			// A handle is a value: a task receives it and calls the actor.
			bad := ltCounter.Remote(-1)
			if err := bad.Ready(ctx); err == nil || !strings.Contains(err.Error(), "negative start") {
				return fmt.Errorf("failed constructor: %v", err)
			}
			if _, err := Get(ctx, ltIncr.Remote(bad, 1)); !errors.Is(err, ErrActorDied) {
				return fmt.Errorf("call on a dead actor: %v", err)
			}
			return nil
		}},
		{"named actors, kill and restart", func(ctx context.Context) error {
			c := ltCounter.Options(Name("lt-counter"), Namespace("lt")).Remote(0)
			if _, err := Get(ctx, ltIncr.Remote(c, 5)); err != nil {
				return err
			}
			found, err := GetActor[ltCounterState](ctx, "lt-counter", "lt")
			if err != nil || found.ID() != c.ID() {
				return fmt.Errorf("GetActor = %v, %v", found.ID(), err)
			}
			if _, err := GetActor[ltCounterState](ctx, "lt-counter", "other"); !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("GetActor in another namespace: %v", err)
			}
			if twin := ltCounter.Options(Name("lt-counter"), Namespace("lt")).Remote(0); twin.Ready(ctx) == nil {
				return errors.New("a second actor took a taken name")
			}
			hang := ltHang.Remote(c)
			<-ltBlockStarted
			queued := ltIncr.Remote(c, 1)
			if err := Kill(c, false); err != nil { // MaxRestarts(1): restarts with fresh state
				return err
			}
			if _, err := Get(ctx, hang); !errors.Is(err, ErrActorDied) {
				return fmt.Errorf("running call after kill: %v", err)
			}
			if v, err := Get(ctx, queued); err != nil || v != 1 {
				return fmt.Errorf("queued call after restart = %d, %v; want 1 (fresh state)", v, err)
			}
			if err := Kill(c, true); err != nil {
				return err
			}
			if _, err := Get(ctx, ltIncr.Remote(found, 1)); !errors.Is(err, ErrActorDied) {
				return fmt.Errorf("call after kill without restart: %v", err)
			}
			if _, err := GetActor[ltCounterState](ctx, "lt-counter", "lt"); !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("name of a dead actor: %v", err)
			}
			return nil
		}},
		{"cancel", func(ctx context.Context) error {
			running := ltBlock.Remote()
			<-ltBlockStarted
			blockedArg := ltBlock.Remote()
			<-ltBlockStarted
			queued := ltAdd.Remote(blockedArg, 1) // waits for its argument
			if err := Cancel(queued, false, false); err != nil {
				return err
			}
			if _, err := Get(ctx, queued); !errors.Is(err, ErrTaskCancelled) {
				return fmt.Errorf("queued: %v", err)
			}
			if err := Cancel(running, false, false); err != nil {
				return err
			}
			if _, err := Get(ctx, running); !errors.Is(err, ErrTaskCancelled) {
				return fmt.Errorf("running: %v", err)
			}
			if err := Cancel(blockedArg, true, false); err != nil {
				return err
			}
			if _, err := Get(ctx, blockedArg); !errors.Is(err, ErrTaskCancelled) {
				return fmt.Errorf("forced: %v", err)
			}
			// A normal task afterwards still runs.
			if v, err := Get(ctx, ltAdd.Remote(1, 1)); err != nil || v != 2 {
				return fmt.Errorf("after cancels: %d, %v", v, err)
			}
			return nil
		}},
		{"Put shares one value", func(ctx context.Context) error {
			big := Put(strings.Repeat("x", 1000))
			refs := []ObjectRef[string]{ltConcat.Remote(big, []byte("1")), ltConcat.Remote(big, []byte("2"))}
			vals, err := GetAll(ctx, refs)
			if err != nil || len(vals[0]) != 1001 || vals[1][1000] != '2' {
				return fmt.Errorf("GetAll: %v", err)
			}
			if got, err := Get(ctx, big); err != nil || len(got) != 1000 {
				return fmt.Errorf("Get of a Put: %v", err)
			}
			if r := Put(func() {}); r.Err() == nil {
				return errors.New("Put of a func did not fail")
			}
			return nil
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runLocal(t, c.driver) })
	}
}

// A driver's error comes back as it is; a panic as a *TaskError; a missing
// driver is refused; outside RunLocal there is no host.
func TestRunLocalResult(t *testing.T) {
	ctx := context.Background()
	mine := errors.New("mine")
	if err := RunLocal(ctx, func(ctx context.Context) error { return fmt.Errorf("wrapped: %w", mine) }); !errors.Is(err, mine) {
		t.Errorf("driver error = %v", err)
	}
	err := RunLocal(ctx, func(ctx context.Context) error { panic("driver boom") })
	var te *TaskError
	if !errors.As(err, &te) || te.Kind != "panic" || te.Message != "driver boom" || te.Function != "main" {
		t.Errorf("driver panic = %#v", err)
	}
	registryMu.Lock()
	old := mainFn
	mainFn = nil
	registryMu.Unlock()
	err = RunLocal(ctx, nil)
	registryMu.Lock()
	mainFn = old
	registryMu.Unlock()
	if !errors.Is(err, ErrBadArgument) {
		t.Errorf("no driver = %v", err)
	}
	if r := ltAdd.Remote(1, 2); !errors.Is(r.Err(), ErrNotInGuest) {
		t.Errorf("Remote outside RunLocal = %v", r.Err())
	}
	var nested error
	runLocal(t, func(ctx context.Context) error {
		nested = RunLocal(ctx, func(ctx context.Context) error { return nil })
		return nil
	})
	if !errors.Is(nested, ErrBadArgument) {
		t.Errorf("RunLocal inside RunLocal = %v; want ErrBadArgument, not a deadlock", nested)
	}
}

// Tasks still running when the driver returns are cancelled, and RunLocal
// waits for them: nothing of a run outlives it.
func TestRunLocalEndsItsTasks(t *testing.T) {
	var ref ObjectRef[int]
	runLocal(t, func(ctx context.Context) error {
		ref = ltBlock.Remote()
		<-ltBlockStarted
		return nil
	})
	if _, err := Get(context.Background(), ref); !errors.Is(err, ErrNotInGuest) {
		t.Errorf("Get after RunLocal = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-ltBlockStarted; cancel() }()
	err := RunLocal(ctx, func(ctx context.Context) error {
		_, err := Get(ctx, ltBlock.Remote())
		return err
	})
	if !errors.Is(err, ErrTaskCancelled) {
		t.Errorf("cancelled ctx: %v", err)
	}
}

// Requests a broken or hostile guest could send: each fails cleanly with
// an error, and a normal task afterwards still runs.
func TestLocalModeBadRequests(t *testing.T) {
	runLocal(t, func(ctx context.Context) error {
		me := currentTask()
		unknownRef := abi.Ref{ID: ids.NewTaskID().Return(0)}
		cases := []struct {
			name string
			op   abi.Op
			req  []byte
			want error
		}{
			{"garbage submit", abi.OpSubmit, []byte{1, 2, 3}, ErrHost},
			{"unknown op", abi.Op(99), nil, ErrHost},
			{"garbage get", abi.OpGet, []byte{0xff}, ErrHost},
			{"put without the put bit", abi.OpPut, (&abi.PutRequest{ID: me.id.Return(0), Value: jsonArg("1")}).Encode(nil), ErrHost},
			{"wait for more than given", abi.OpWait, (&abi.WaitRequest{NumReturns: 2, Refs: []abi.Ref{unknownRef}}).Encode(nil), ErrHost},
			{"wait on an unknown ref", abi.OpWait, (&abi.WaitRequest{NumReturns: 1, Refs: []abi.Ref{unknownRef}}).Encode(nil), ErrHost},
			{"yield outside a generator", abi.OpYield, abi.EncodeValue(nil, jsonArg("1")), ErrHost},
			{"next of a non-generator", abi.OpNext, (&abi.NextRequest{Task: me.id}).Encode(nil), ErrHost},
			{"cancelled with a body", abi.OpCancelled, []byte{1}, ErrHost},
			{"unknown actor", abi.OpGetActor, (&abi.GetActorRequest{Name: "nobody"}).Encode(nil), ErrNotFound},
		}
		for _, c := range cases {
			if _, err := hostCall(c.op, c.req); !errors.Is(err, c.want) {
				return fmt.Errorf("%s: %v; want %v", c.name, err, c.want)
			}
		}
		// Submits the host refuses fail the child, not the caller.
		refused := []abi.SubmitRequest{
			{Task: me.nextChild(), Function: "lt.nothing", NumReturns: 1},
			{Task: me.nextChild(), Function: "lt.add", NumReturns: 1, Args: []abi.Arg{{Value: jsonArg("1")}}},
			{Task: me.nextChild(), Function: "lt.add", NumReturns: 1, Generator: true, Args: []abi.Arg{{Value: jsonArg("1")}, {Value: jsonArg("1")}}},
			{Task: me.nextChild(), Function: "lt.Counter.incr", NumReturns: 1, Args: []abi.Arg{{Value: jsonArg("1")}}},
			{Task: me.nextChild(), Function: "lt.add", NumReturns: 1, Args: []abi.Arg{{IsRef: true, Ref: unknownRef}, {Value: jsonArg("1")}}},
			{Task: me.nextChild(), Function: "lt.add", NumReturns: 1, Args: []abi.Arg{{Value: jsonArg(`"x"`)}, {Value: jsonArg("1")}}},
		}
		for i, req := range refused {
			if _, err := hostCall(abi.OpSubmit, req.Encode(nil)); err != nil {
				return fmt.Errorf("refused submit %d: %v", i, err)
			}
			_, err := Get(ctx, ObjectRef[int]{id: req.Task.Return(0), owner: LocalOwner})
			var te *TaskError
			if !errors.As(err, &te) || te.Kind != "bad_request" {
				return fmt.Errorf("refused submit %d: %v; want a bad_request TaskError", i, err)
			}
		}
		if _, err := Get(ctx, ObjectRef[int]{id: unknownRef.ID}); err == nil {
			return errors.New("Get of an unknown ref succeeded")
		}
		// A put under another task's ID is dropped: it cannot forge that
		// task's objects.
		other := ltAdd.Remote(1, 1)
		forged := abi.PutRequest{ID: other.id.Task().Put(0), Value: jsonArg("666")}
		if _, err := hostCall(abi.OpPut, forged.Encode(nil)); err != nil {
			return fmt.Errorf("forged put: %v", err)
		}
		if _, err := Get(ctx, ObjectRef[int]{id: forged.ID}); err == nil {
			return errors.New("a forged put was stored")
		}
		if v, err := Get(ctx, ltAdd.Remote(2, 3)); err != nil || v != 5 {
			return fmt.Errorf("a normal task afterwards: %d, %v", v, err)
		}
		return nil
	})
}

// A function's own goroutines may submit and get: they act for local
// mode's own task.
func TestLocalModeGoroutines(t *testing.T) {
	fanout := func(ctx context.Context) (int, error) {
		var wg sync.WaitGroup
		vals := make([]int, 8)
		errs := make([]error, 8)
		for i := range vals {
			wg.Go(func() { vals[i], errs[i] = Get(ctx, ltAdd.Remote(i, i)) })
		}
		wg.Wait()
		s := 0
		for _, v := range vals {
			s += v
		}
		return s, errors.Join(errs...)
	}
	runLocal(t, func(ctx context.Context) error {
		s, err := fanout(ctx)
		if err != nil || s != 56 {
			return fmt.Errorf("fan-out = %d, %v", s, err)
		}
		return nil
	})
}
