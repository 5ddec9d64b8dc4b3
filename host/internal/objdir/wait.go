package objdir

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

// waiter is a callback registered by Watch; cancel stops it firing, so a
// wait that returned early leaves nothing behind on the objects it skipped.
type waiter struct {
	fn   func(abi.Value)
	dead bool // guarded by Dir.mu
}

// OnReady calls fn with id's value (its Data may be nil for large values)
// once it is ready, at once if it is. It fails with ErrNotFound if id is
// unknown (on a restarted host, fn gets owner_died: restart.go). fn runs
// without the Dir's lock, on the goroutine that seals id.
func (d *Dir) OnReady(ctx context.Context, id ids.ObjectID, fn func(abi.Value)) error {
	_, err := d.Watch(ctx, id, fn)
	return err
}

// Watch is OnReady that returns a cancel for a callback still pending.
func (d *Dir) Watch(ctx context.Context, id ids.ObjectID, fn func(abi.Value)) (cancel func(), err error) {
	d.mu.Lock()
	ob := d.m[id]
	if ob != nil && !ob.ready {
		w := &waiter{fn: fn}
		if n := len(ob.waiters); n >= 64 && n&(n-1) == 0 {
			// Drop cancelled waiters now and then, so an object many waits
			// skipped does not keep them all.
			live := ob.waiters[:0]
			for _, x := range ob.waiters {
				if !x.dead {
					live = append(live, x)
				}
			}
			ob.waiters = live
		}
		ob.waiters = append(ob.waiters, w)
		d.mu.Unlock()
		return func() { d.mu.Lock(); w.dead = true; d.mu.Unlock() }, nil
	}
	var val abi.Value
	if ob != nil {
		val = ob.val
	}
	d.mu.Unlock()
	if ob != nil {
		fn(val)
		return func() {}, nil
	}
	meta, err := d.stat(ctx, id)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		err = d.notFound(id)
		if errors.Is(err, ErrFreed) {
			// Ready for good, as a failure: a Get says why.
			fn(freedValue(id, err))
			return func() {}, nil
		}
		if d.recallHeld(ctx, id) {
			return d.Watch(ctx, id, fn) // ready as held now
		}
		if v, ok := d.diedWithOwner(id); ok {
			fn(v) // this host restarted and lost it: its owner died
			return func() {}, nil
		}
		return nil, err
	}
	fn(abi.Value{Codec: abi.Codec(meta.Codec)})
	return func() {}, nil
}

// WaitReady blocks until at least need of refs are ready (all, for a Get),
// one of them failed (when failFast), the timeout passes (< 0: none; then
// ErrTimeout), ctx ends (its cause: context.Cause) or cancel closes
// (ErrCancelled). It returns which refs are ready; on ErrTimeout too.
func (d *Dir) WaitReady(ctx context.Context, refs []ids.ObjectID, need int, failFast bool, timeout time.Duration, cancel <-chan struct{}) ([]bool, error) {
	if r, ok := d.readyNow(refs, need, failFast); ok {
		return r, nil
	}
	ready := make([]bool, len(refs))
	var mu sync.Mutex
	count, failed := 0, false
	wake := make(chan struct{}, 1)
	signal := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	var cancels []func()
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	for i, id := range refs {
		cancel, err := d.Watch(ctx, id, func(v abi.Value) {
			mu.Lock()
			if !ready[i] {
				ready[i] = true
				count++
			}
			if v.Codec == abi.CodecError {
				failed = true
			}
			done := count >= need || (failFast && failed)
			mu.Unlock()
			if done {
				signal()
			}
		})
		if err != nil {
			return nil, err
		}
		cancels = append(cancels, cancel)
	}
	var timer <-chan time.Time
	if timeout >= 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	snapshot := func() ([]bool, bool) {
		mu.Lock()
		defer mu.Unlock()
		return append([]bool(nil), ready...), count >= need || (failFast && failed)
	}
	for {
		if r, done := snapshot(); done {
			return r, nil
		}
		select {
		case <-wake:
		case <-timer:
			r, _ := snapshot()
			return r, ErrTimeout
		case <-cancel:
			return nil, ErrCancelled
		case <-ctx.Done():
			// Why it ended: a host shutting down is no cancel.
			return nil, context.Cause(ctx)
		}
	}
}

// readyNow is WaitReady's fast path, under one hold of the lock and with
// nothing registered: which refs the directory has ready, and whether that
// is enough. A Wait over many refs is called again and again as they
// become ready (a loop of Wait(refs, 1) over 1,000 refs), and most calls
// find enough ready at once; watching every ref of each costs an
// allocation and a lock round per ref. Refs it does not know (not in
// memory) are left to the watching path, which looks in the store.
func (d *Dir) readyNow(refs []ids.ObjectID, need int, failFast bool) ([]bool, bool) {
	ready := make([]bool, len(refs))
	count, failed := 0, false
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, id := range refs {
		if ob := d.m[id]; ob != nil && ob.ready {
			ready[i] = true
			count++
			failed = failed || ob.val.Codec == abi.CodecError
		}
	}
	return ready, count >= need || (failFast && failed)
}

// Get waits for refs (see WaitReady) and returns their values, fetching
// the bytes of those held elsewhere. When one has failed, it returns at
// once and every slot not ready yet holds that failure. An object whose
// bytes are gone (ErrLost, ErrOwnerDied) is a CodecError value of kind
// object_lost or owner_died, not an error.
func (d *Dir) Get(ctx context.Context, refs []ids.ObjectID, timeout time.Duration, cancel <-chan struct{}) ([]abi.Value, error) {
	ready, err := d.WaitReady(ctx, refs, len(refs), true, timeout, cancel)
	if err != nil {
		return nil, err
	}
	vals := make([]abi.Value, len(refs))
	var firstErr *abi.Value
	for i, id := range refs {
		if !ready[i] {
			continue
		}
		d.MarkFetched(id)
		if vals[i], err = d.Value(ctx, id); err != nil {
			kind := abi.ErrorObjectLost
			switch {
			case errors.Is(err, ErrOwnerDied):
				kind = abi.ErrorOwnerDied
			case errors.Is(err, ErrFreed):
				kind = abi.ErrorObjectFreed
			case !errors.Is(err, ErrLost):
				return nil, err
			}
			te := &abi.TaskError{Kind: kind, TaskID: id.Task().String(), Message: err.Error()}
			if oa := (*ownerAnswer)(nil); errors.As(err, &oa) {
				te = oa.te // as its owner said it
			}
			vals[i] = te.Encode()
		}
		if vals[i].Codec == abi.CodecError && firstErr == nil {
			firstErr = &vals[i]
		}
	}
	for i := range vals {
		if !ready[i] {
			vals[i] = *firstErr
		}
	}
	return vals, nil
}
