package ray

import (
	"context"
	"fmt"
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
	isReady, err := waitRefs(ctx, refs, numReturns, timeout)
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

// waitRefs is Wait and WaitAny: which of refs are ready.
func waitRefs(ctx context.Context, refs []AnyRef, numReturns int, timeout time.Duration) ([]bool, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	if numReturns < 1 || numReturns > len(refs) {
		return nil, fmt.Errorf("%w: numReturns %d not in 1..%d", ErrBadArgument, numReturns, len(refs))
	}
	req := abi.WaitRequest{TimeoutNs: -1, NumReturns: uint32(numReturns), Refs: make([]abi.Ref, len(refs))}
	if timeout >= 0 {
		req.TimeoutNs = int64(timeout)
	}
	if d := timeoutFrom(ctx); d >= 0 && (req.TimeoutNs < 0 || d < req.TimeoutNs) {
		req.TimeoutNs = d
	}
	seen := make(map[ids.ObjectID]bool, len(refs))
	for i, r := range refs {
		if r == nil {
			return nil, fmt.Errorf("%w: ref %d is nil", ErrBadArgument, i+1)
		}
		if err := r.refErr(); err != nil {
			return nil, err
		}
		ref := r.abiRef()
		if seen[ref.ID] {
			return nil, fmt.Errorf("%w: ref %s given twice", ErrBadArgument, ref.ID)
		}
		seen[ref.ID] = true
		req.Refs[i] = ref
	}
	b, err := hostCall(abi.OpWait, req.Encode(nil))
	if err != nil {
		return nil, err
	}
	var rep abi.WaitReply
	if err := rep.Decode(b); err != nil {
		return nil, fmt.Errorf("%w: malformed wait reply", ErrHost)
	}
	isReady := make([]bool, len(refs))
	for _, i := range rep.Ready {
		if int(i) < len(refs) {
			isReady[i] = true
		}
	}
	return isReady, nil
}
