package main

import (
	"context"
	"fmt"

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
