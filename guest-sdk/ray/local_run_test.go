//go:build !wasip1

// This file holds the tests of RunLocal itself: the driver's result, the
// end of its tasks when it returns, requests local mode refuses, and the
// goroutines it leaves behind.

package ray

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

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
