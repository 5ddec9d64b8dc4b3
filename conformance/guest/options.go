package main

import (
	"context"
	"fmt"
	"time"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

// Item 7: options are validated when a call is submitted.

// submitWith submits add(1, 2) with opt and reports "refused" (with the
// sentinel the error matches) or, once the call ran, "accepted".
func submitWith(ctx context.Context, opt ray.Option) (string, string) {
	ref := add.Options(opt).Remote(1, 2)
	if err := ref.Err(); err != nil {
		return "refused:" + token(err), short(err.Error())
	}
	c, cancel := bounded(ctx)
	defer cancel()
	if _, err := ray.Get(c, ref); err != nil {
		_ = ray.Cancel(ref, true, true)
		return "accepted, then " + token(err), short(err.Error())
	}
	return "accepted", ""
}

// createWith creates a Counter with opt and reports as submitWith does.
func createWith(ctx context.Context, opt ray.Option) (string, string) {
	h := counterClass.Options(opt).Remote()
	if err := h.Err(); err != nil {
		return "refused:" + token(err), short(err.Error())
	}
	defer func() { _ = ray.Kill(h, true) }()
	c, cancel := bounded(ctx)
	defer cancel()
	if _, err := ray.Get(c, incr.Remote(h, 1)); err != nil {
		return "accepted, then " + token(err), short(err.Error())
	}
	return "accepted", ""
}

var _ = ray.Func0("probe_validate_options", func(ctx context.Context) ([]Step, error) {
	var s steps
	for _, c := range []struct {
		name string
		opt  ray.Option
	}{
		{"MaxRetries(-5)", ray.MaxRetries(-5)},
		{"MaxRetries(-1)", ray.MaxRetries(-1)},
		{"NumCPUs(1e-7)", ray.NumCPUs(1e-7)},
		{"NumGPUs(1e-7)", ray.NumGPUs(1e-7)},
		{"Resources(disk: 1e-7)", ray.Resources(map[string]float64{"disk": 1e-7})},
		{"NumCPUs(-2)", ray.NumCPUs(-2)},
		{"NumGPUs(-1)", ray.NumGPUs(-1)},
		{"NumCPUs(0.0001)", ray.NumCPUs(0.0001)},
		{"NumCPUs(0.5)", ray.NumCPUs(0.5)},
	} {
		got, detail := submitWith(ctx, c.opt)
		s = append(s, Step{What: "task " + c.name, Got: got, Detail: detail})
	}
	for _, c := range []struct {
		name string
		opt  ray.Option
	}{
		{"MaxRestarts(-5)", ray.MaxRestarts(-5)},
		{"MaxTaskRetries(-5)", ray.MaxTaskRetries(-5)},
		{"MaxRestarts(-1)", ray.MaxRestarts(-1)},
	} {
		got, detail := createWith(ctx, c.opt)
		s = append(s, Step{What: "actor " + c.name, Got: got, Detail: detail})
	}
	return s, nil
})

// Item 8: Wait on an empty list.
var _ = ray.Func0("probe_wait_empty", func(ctx context.Context) ([]Step, error) {
	var s steps
	for _, c := range []struct {
		name string
		refs []ray.ObjectRef[int]
	}{
		{"Wait(nil, 1, no timeout)", nil},
		{"Wait([], 1, no timeout)", []ray.ObjectRef[int]{}},
	} {
		ready, notReady, err := ray.Wait(ctx, c.refs, 1, -1)
		s.add(c.name, fmt.Sprintf("ready %d, not ready %d", len(ready), len(notReady)), err)
	}
	return s, nil
})

// napThen returns v after ms milliseconds.
var napThen = ray.Func2("nap_then", func(ctx context.Context, v, ms int) (int, error) {
	if err := ray.Sleep(ctx, time.Duration(ms)*time.Millisecond); err != nil {
		return 0, err
	}
	return v, nil
})

// Wait's contract in Ray's "handle results as they come" loop, and at
// its edges: the SDK remembers which refs were ready (guest-sdk/ray
// waitany.go), which must change none of it.
var _ = ray.Func0("probe_wait_loop", func(ctx context.Context) ([]Step, error) {
	var s steps
	refs := make([]ray.ObjectRef[int], 40)
	for i := range refs {
		refs[i] = napThen.Remote(i, (i%4)*20)
	}
	seen := map[int]bool{}
	calls, wrong := 0, 0
	for rest := refs; len(rest) > 0; {
		ready, notReady, err := ray.Wait(ctx, rest, 1, -1)
		if err != nil {
			s.add("Wait(refs, 1) in a loop", nil, err)
			return s, nil
		}
		calls++
		if len(ready) != 1 || len(ready)+len(notReady) != len(rest) {
			wrong++
		} else if v, err := ray.Get(ctx, ready[0]); err != nil || seen[v] {
			wrong++
		} else {
			seen[v] = true
		}
		rest = notReady
	}
	s.add("Wait(refs, 1) in a loop over 40 refs", fmt.Sprintf("%d calls, %d values, %d wrong answers", calls, len(seen), wrong), nil)

	ready, notReady, err := ray.Wait(ctx, refs, 3, -1)
	s.add("Wait(40 ready refs, 3)", fmt.Sprintf("ready %d, not ready %d", len(ready), len(notReady)), err)
	inOrder := len(ready) == 3
	for i := range ready {
		inOrder = inOrder && ready[i].ID() == refs[i].ID()
	}
	s.add("the ready ones are the first three", inOrder, nil)

	again := refs[5] // a copy is the same ref
	_, _, err = ray.Wait(ctx, []ray.ObjectRef[int]{refs[5], again}, 1, -1)
	s.add("Wait([r, a copy of r], 1)", nil, err)
	_, _, err = ray.Wait(ctx, []ray.ObjectRef[int]{refs[6], refs[7]}, 1, -1)
	s.add("then Wait([r6, r7], 1)", err == nil, err)

	slow := napThen.Remote(-1, 60_000)
	ready, notReady, err = ray.Wait(ctx, []ray.ObjectRef[int]{slow, refs[0]}, 2, 0)
	s.add("Wait([pending, ready], 2, timeout 0)", fmt.Sprintf("ready %d, not ready %d", len(ready), len(notReady)), err)
	ready, _, err = ray.Wait(ctx, []ray.ObjectRef[int]{slow, refs[1]}, 1, 0)
	s.add("Wait([pending, ready], 1, timeout 0) gives the ready one", len(ready) == 1 && ready[0].ID() == refs[1].ID(), err)
	_ = ray.Cancel(slow, true, false)
	return s, nil
})
