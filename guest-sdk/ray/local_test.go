//go:build !wasip1

package ray

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

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
		{"invalid options fail the call", func(ctx context.Context) error {
			for _, o := range []Option{MaxRetries(-5), NumGPUs(1e-7), NumCPUs(1e-7)} {
				if _, err := Get(ctx, ltAdd.Options(o).Remote(1, 2)); !errors.Is(err, ErrBadArgument) {
					return fmt.Errorf("Get = %v, want ErrBadArgument", err)
				}
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
			// Ray's ray.wait([]) returns ([], []).
			if ready, notReady, err := Wait(ctx, []ObjectRef[int]{}, 1, -1); err != nil || len(ready)+len(notReady) != 0 {
				return fmt.Errorf("Wait on no refs = %v %v %v", ready, notReady, err)
			}
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
			if !errors.As(err, &te) || te.Kind != "panic" || te.Message != "boom" || !strings.Contains(te.Stack, "local_fixtures_test.go") {
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
