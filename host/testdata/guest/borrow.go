package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

// Refs borrowed by other hosts: an actor placed elsewhere keeps refs this
// host owns (cmd/rayhost TestClusterBorrows).

// sum_refs reads the values refs name.
var sumRefs = ray.Func1("sum_refs", func(ctx context.Context, refs []ray.ObjectRef[int]) (int, error) {
	vals, err := ray.GetAll(ctx, refs)
	sum := 0
	for _, v := range vals {
		sum += v
	}
	return sum, err
})

// stashed_via_task has a task on node read the actor's stashed refs.
var stashedViaTask = ray.Method1(counterClass, "stashed_via_task", func(c *Counter, ctx context.Context, node string) (int, error) {
	return ray.Get(ctx, sumRefs.Options(ray.NodeAffinity(node, false)).Remote(c.Stash))
})

// borrowed_on: an actor on node keeps refs to values put by tasks that
// ended (this host owns them; node borrows them); it reads them, a task it
// submits on node reads them, then the actor is killed. It returns both
// sums and the values' IDs (as text: the caller holds none of them).
var _ = ray.Func2("borrowed_on", func(ctx context.Context, node string, n int) ([]any, error) {
	c := counterClass.Options(ray.NodeAffinity(node, false)).Remote()
	for v := 1; v <= n; v++ {
		if _, err := ray.Get(ctx, stashPut.Remote(c, v)); err != nil {
			return nil, err
		}
	}
	runtime.GC()
	direct, err := ray.Get(ctx, stashed.Remote(c))
	if err != nil {
		return nil, fmt.Errorf("the actor's read: %w", err)
	}
	nested, err := ray.Get(ctx, stashedViaTask.Remote(c, node))
	if err != nil {
		return nil, fmt.Errorf("the nested task's read: %w", err)
	}
	refs, err := ray.Get(ctx, stashIDs.Remote(c))
	if err != nil {
		return nil, err
	}
	return []any{direct, nested, refs}, ray.Kill(c, true)
})

// stash_ids names the actor's stashed refs.
var stashIDs = ray.Method0(counterClass, "stash_ids", func(c *Counter, ctx context.Context) ([]string, error) {
	out := make([]string, len(c.Stash))
	for i, r := range c.Stash {
		out[i] = r.ID()
	}
	return out, nil
})

// get_again reads refs the guest holds n times each, the way a loop or an
// actor re-reads a parameter object: a small value it put, a large one,
// and a small value that holds a ref. It changes the bytes each Get gave
// it, then releases the small value and reads it once more. It returns
// what it saw, as text, for the test to check.
var _ = ray.Func1("get_again", func(ctx context.Context, n int) (string, error) {
	small := ray.Put([]byte("small value"))
	large := ray.Put(make([]byte, 1<<20))
	inner := ray.Put(41)
	holder := ray.Put(struct{ Ref ray.ObjectRef[int] }{inner})
	for i := range n {
		b, err := ray.Get(ctx, small)
		if err != nil {
			return "", err
		}
		if string(b) != "small value" {
			return "", fmt.Errorf("get %d of the small value: %q", i, b)
		}
		b[0] = 'X' // the caller's copy only
		if l, err := ray.Get(ctx, large); err != nil || len(l) != 1<<20 {
			return "", fmt.Errorf("get %d of the large value: %d bytes, %v", i, len(l), err)
		}
		h, err := ray.Get(ctx, holder)
		if err != nil {
			return "", err
		}
		if v, err := ray.Get(ctx, h.Ref); err != nil || v != 41 {
			return "", fmt.Errorf("get %d through the held ref: %d, %v", i, v, err)
		}
	}
	runtime.KeepAlive(inner) // its handle, and so its cached value, live on
	ray.Release(small)
	_, err := ray.Get(ctx, small)
	return fmt.Sprintf("after release: %v", errors.Is(err, ray.ErrObjectFreed)), nil
})
