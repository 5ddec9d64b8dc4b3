package ray

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// WaitAny is Wait over refs of any element types, Ray's ray.wait over a
// list of ObjectRefs and ObjectRefGenerators: it returns once numReturns
// of refs are ready, or once timeout or ctx's deadline has passed
// (timeout < 0: no limit; 0: just look), with what is ready then. An
// ObjectRef is ready when its value exists (also when that value is a
// failure); an *ObjectRefGenerator when its next item exists or its
// stream has ended (Next then returns at once). ready and notReady hold
// the values of refs, in their input order; use a type switch or keep
// the typed refs beside them to get at the values.
//
//	n, s := add.Remote(1, 2), greet.Remote("ray") // ObjectRef[int], ObjectRef[string]
//	ready, notReady, err := ray.WaitAny(ctx, []ray.AnyRef{n, s}, 1, -1)
//
// As for Wait, numReturns must be in 1..len(refs), refs must be distinct,
// and no refs give two empty lists at once.
func WaitAny(ctx context.Context, refs []AnyRef, numReturns int, timeout time.Duration) (ready, notReady []AnyRef, err error) {
	isReady, err := waitRefs(ctx, anyRefs(refs), numReturns, timeout)
	if err != nil {
		return nil, nil, err
	}
	for i, r := range refs {
		if isReady[i] {
			ready = append(ready, r)
		} else {
			notReady = append(notReady, r)
		}
	}
	return ready, notReady, nil
}

// waitCalls numbers the calls of waitRefs (handle.waitCall).
var waitCalls atomic.Uint64

// waitRefs is Wait and WaitAny: which of refs are ready, at most
// numReturns of them (the first in input order).
//
// A loop of Wait(refs, 1) over many refs (Ray's way to handle results as
// they come) would send every ref to the host at every call. Readiness
// does not go back, so the SDK remembers it on each ref's handle: a Wait
// that finds enough refs known ready answers without a host call, and
// otherwise first asks the host which refs are ready now (timeout 0, all
// of them), and blocks (a second call, numReturns) only if too few are.
func waitRefs(ctx context.Context, refs refSource, numReturns int, timeout time.Duration) ([]bool, error) {
	count := refs.count()
	if count == 0 {
		return nil, nil
	}
	if numReturns < 1 || numReturns > count {
		return nil, fmt.Errorf("%w: numReturns %d not in 1..%d", ErrBadArgument, numReturns, count)
	}
	call := waitCalls.Add(1)
	handles := make([]*handle, count)
	var seen map[ids.ObjectID]bool // refs without a handle
	known := 0
	for i := range count {
		h, ref, err := refs.at(i)
		if err != nil {
			return nil, err
		}
		if h != nil {
			// The copies of one object's refs share a handle.
			if h.waitCall.Swap(call) == call {
				return nil, fmt.Errorf("%w: ref %s given twice", ErrBadArgument, ref.ID)
			}
			handles[i] = h
			if h.ready.Load() {
				known++
			}
			continue
		}
		id := ref.ID
		if seen == nil {
			seen = map[ids.ObjectID]bool{}
		}
		if seen[id] {
			return nil, fmt.Errorf("%w: ref %s given twice", ErrBadArgument, id)
		}
		seen[id] = true
	}
	if known < numReturns {
		// Which are ready now, all of them: no waiting.
		if err := askReady(ctx, refs, handles, count, 0); err != nil {
			return nil, err
		}
		known = 0
		for _, h := range handles {
			if h != nil && h.ready.Load() {
				known++
			}
		}
	}
	if known < numReturns && timeout != 0 {
		if err := askReady(ctx, refs, handles, numReturns, timeout); err != nil {
			return nil, err
		}
	}
	isReady := make([]bool, count)
	n := 0
	for i, h := range handles {
		if n < numReturns && h != nil && h.ready.Load() {
			isReady[i] = true
			n++
		}
	}
	return isReady, nil
}

// askReady asks the host to wait (up to timeout) until need of refs are
// ready, and marks the handles of those it says are. Refs without a
// handle are looked up every time: their handles slot is nil, so a
// handle is made for the answer only.
func askReady(ctx context.Context, refs refSource, handles []*handle, need int, timeout time.Duration) error {
	req := abi.WaitRequest{TimeoutNs: -1, NumReturns: uint32(need), Refs: make([]abi.Ref, refs.count())}
	if timeout >= 0 {
		req.TimeoutNs = int64(timeout)
	}
	if d := timeoutFrom(ctx); d >= 0 && (req.TimeoutNs < 0 || d < req.TimeoutNs) {
		req.TimeoutNs = d
	}
	for i := range req.Refs {
		_, req.Refs[i], _ = refs.at(i)
	}
	b, err := hostCall(abi.OpWait, req.Encode(nil))
	if err != nil {
		return err
	}
	var rep abi.WaitReply
	if err := rep.Decode(b); err != nil {
		return fmt.Errorf("%w: malformed wait reply", ErrHost)
	}
	for _, i := range rep.Ready {
		if int(i) < len(handles) {
			if handles[i] == nil {
				handles[i] = &handle{} // this call's answer only
			}
			handles[i].ready.Store(true)
		}
	}
	return nil
}

// refSource is the refs of a Wait, typed or not, without boxing each
// typed ref into an AnyRef (an allocation per ref per call).
type refSource interface {
	count() int
	// at is the i-th ref's handle (nil if it has none), its wire form,
	// and the error a ref that failed to be made carries.
	at(i int) (*handle, abi.Ref, error)
}

type typedRefs[T any] []ObjectRef[T]

func (s typedRefs[T]) count() int { return len(s) }
func (s typedRefs[T]) at(i int) (*handle, abi.Ref, error) {
	r := &s[i]
	return r.h, abi.Ref{ID: r.id, Owner: r.owner}, r.err
}

type anyRefs []AnyRef

func (s anyRefs) count() int { return len(s) }
func (s anyRefs) at(i int) (*handle, abi.Ref, error) {
	r := s[i]
	if r == nil {
		return nil, abi.Ref{}, fmt.Errorf("%w: ref %d is nil", ErrBadArgument, i+1)
	}
	return r.refHandle(), r.abiRef(), r.refErr()
}
