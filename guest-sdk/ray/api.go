package ray

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

func submit(e *entry, o options, args []any) (ids.TaskID, string, error) {
	return submitKind(e, o, args, abi.KindCall, ids.TaskID{})
}

func submitKind(e *entry, o options, args []any, kind abi.Kind, actor ids.TaskID) (ids.TaskID, string, error) {
	t := currentTask()
	if t == nil {
		return ids.TaskID{}, "", ErrNotInGuest
	}
	if e.variadic == nil && len(args) != len(e.argTypes) {
		return ids.TaskID{}, "", fmt.Errorf("%w: %d arguments for %d parameters", ErrBadArgument, len(args), len(e.argTypes))
	}
	if o.err != nil {
		return ids.TaskID{}, "", fmt.Errorf("%s: %w", e.name, o.err)
	}
	req := abi.SubmitRequest{Function: e.name, NumReturns: uint32(e.numReturns), Generator: e.generator, Kind: kind, Actor: actor}
	o.apply(&req)
	if kind == abi.KindActorCall && !o.hasRetries {
		// A method call's application errors are retried only as its
		// options say (Ray's max_task_retries defaults to 0); the actor's
		// death is MaxTaskRetries' business.
		req.MaxRetries = 0
	}
	if !validResources(req.Resources) {
		return ids.TaskID{}, "", fmt.Errorf("%w: %s: %s", ErrBadArgument, e.name, errResources)
	}
	req.Args = make([]abi.Arg, len(args))
	for i, a := range args {
		want := e.variadic
		if want == nil {
			want = e.argTypes[i]
		}
		arg, err := encodeArg(a, want)
		if err != nil {
			return ids.TaskID{}, "", fmt.Errorf("argument %d: %w", i+1, err)
		}
		req.Args[i] = arg
	}
	req.Task = t.nextChild()
	if _, err := hostCall(abi.OpSubmit, req.Encode(nil)); err != nil {
		return ids.TaskID{}, "", err
	}
	return req.Task, t.owner, nil
}

// encodeArg turns one Remote argument into an inline value or a ref, after
// checking that it fits the parameter's type.
func encodeArg(a any, want reflect.Type) (abi.Arg, error) {
	if r, ok := a.(AnyRef); ok {
		if err := r.refErr(); err != nil {
			return abi.Arg{}, err
		}
		if r.elemType() == nil {
			return abi.Arg{}, fmt.Errorf("%w: an ObjectRefGenerator cannot be an argument (pass its items' refs)", ErrBadArgument)
		}
		if got := r.elemType(); !fits(got, want) {
			return abi.Arg{}, fmt.Errorf("%w: ObjectRef[%v] for a parameter of type %v", ErrBadArgument, got, want)
		}
		return abi.Arg{IsRef: true, Ref: r.abiRef()}, nil
	}
	if got := reflect.TypeOf(a); !fits(got, want) {
		return abi.Arg{}, fmt.Errorf("%w: %v for a parameter of type %v", ErrBadArgument, got, want)
	}
	v, err := encodeValue(a)
	return abi.Arg{Value: v}, err
}

// fits reports whether a value of type got can fill a parameter of type
// want. Numbers fit any numeric type (JSON carries them alike), so
// f.Remote(3) works for an int64 parameter.
func fits(got, want reflect.Type) bool {
	if want.Kind() == reflect.Interface {
		return got == nil || got.Implements(want)
	}
	if got == nil {
		switch want.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map:
			return true
		}
		return false
	}
	if got.AssignableTo(want) {
		return true
	}
	return isNumber(got) && isNumber(want)
}

func isNumber(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// Put stores v in the object store and returns its ObjectRef. Pass the ref
// to many tasks to share one copy of a large value. A value that does not
// encode gives a ref whose Err (and Get) reports it.
func Put[T any](v T) ObjectRef[T] {
	t := currentTask()
	if t == nil {
		return ObjectRef[T]{err: ErrNotInGuest}
	}
	val, err := encodeValue(v)
	if err != nil {
		return ObjectRef[T]{err: fmt.Errorf("ray.Put: %w", err)}
	}
	req := abi.PutRequest{ID: t.nextPut(), Value: val}
	if err := putValue(req); err != nil {
		return ObjectRef[T]{err: fmt.Errorf("ray.Put: %w", err)}
	}
	return ObjectRef[T]{id: req.ID, owner: t.owner, h: track(req.ID, 1)}
}

// timeoutFrom turns ctx's deadline into the host's timeout: -1 for none.
func timeoutFrom(ctx context.Context) int64 {
	d, ok := ctx.Deadline()
	if !ok {
		return -1
	}
	return max(int64(time.Until(d)), 0)
}

func getValues(ctx context.Context, refs []AnyRef) ([]abi.Value, error) {
	for _, r := range refs {
		if err := r.refErr(); err != nil {
			return nil, err
		}
	}
	if vals, ok := cachedValues(refs); ok {
		return vals, nil
	}
	req := abi.GetRequest{TimeoutNs: timeoutFrom(ctx), Refs: make([]abi.Ref, len(refs))}
	for i, r := range refs {
		req.Refs[i] = r.abiRef()
	}
	b, err := hostCall(abi.OpGet, req.Encode(nil))
	if err != nil {
		return nil, err
	}
	var rep abi.GetReply
	if err := rep.Decode(b); err != nil || len(rep.Values) != len(refs) {
		return nil, fmt.Errorf("%w: malformed get reply", ErrHost)
	}
	keepValues(refs, rep.Values)
	return rep.Values, nil
}

// Get waits for the value of ref and returns it. It honours ctx's deadline:
// past it, Get returns an error for which errors.Is(err, ErrGetTimeout). A
// task blocked in Get gives its CPU back to the host until Get returns, so
// nested tasks cannot deadlock.
func Get[T any](ctx context.Context, ref ObjectRef[T]) (T, error) {
	vals, err := getValues(ctx, []AnyRef{ref})
	if err != nil {
		var zero T
		return zero, err
	}
	return decodeValue[T](vals[0])
}

// GetAll waits for every ref and returns their values in order. It returns
// as soon as one of them has failed, with that error.
func GetAll[T any](ctx context.Context, refs []ObjectRef[T]) ([]T, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	vals, err := getValues(ctx, Refs(refs))
	if err != nil {
		return nil, err
	}
	out := make([]T, len(vals))
	for i, v := range vals {
		if out[i], err = decodeValue[T](v); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Wait returns once numReturns of refs are ready, or once timeout or ctx's
// deadline has passed (timeout < 0: no limit; 0: just look), with what is
// ready then: passing the timeout is not an error. A ref is ready when its
// value exists, also when that value is a failure. ready and notReady keep
// the input order. numReturns must be in 1..len(refs) and refs must be
// distinct. Waiting on no refs returns two empty lists at once, as Ray's
// ray.wait([]) does.
func Wait[T any](ctx context.Context, refs []ObjectRef[T], numReturns int, timeout time.Duration) (ready, notReady []ObjectRef[T], err error) {
	isReady, err := waitRefs(ctx, typedRefs[T](refs), numReturns, timeout)
	if err != nil {
		return nil, nil, err
	}
	if len(refs) > 0 { // waitRefs checked numReturns is in 1..len(refs)
		ready, notReady = make([]ObjectRef[T], 0, numReturns), make([]ObjectRef[T], 0, len(refs)-numReturns)
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

// Sleep pauses the task for d. Unlike time.Sleep, the host ends it early
// when the task is cancelled; Sleep then returns ErrTaskCancelled. A ctx
// deadline sooner than d ends it at the deadline with ctx's error.
func Sleep(ctx context.Context, d time.Duration) error {
	var early error
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		d, early = time.Until(dl), context.DeadlineExceeded
	}
	if d > 0 {
		req := abi.SleepRequest{Ns: int64(d)}
		if _, err := hostCall(abi.OpSleep, req.Encode(nil)); err != nil {
			return err
		}
	}
	return early
}

// Cancelled reports whether the running task has been cancelled. A
// long-running loop can check it to stop early.
func Cancelled(ctx context.Context) bool {
	b, err := hostCall(abi.OpCancelled, nil)
	if errors.Is(err, ErrTaskCancelled) {
		return true
	}
	return err == nil && len(b) == 1 && b[0] == 1
}

func codeError(c abi.ErrCode) error {
	switch c {
	case abi.ErrCodeTimeout:
		return ErrGetTimeout
	case abi.ErrCodeCancelled:
		return ErrTaskCancelled
	case abi.ErrCodeTooLarge:
		return ErrTooLarge
	case abi.ErrCodeNotFound:
		return ErrNotFound
	}
	return opError{c}
}

// opError is a host call's failure without an error of its own: ErrHost,
// with the code.
type opError struct{ code abi.ErrCode }

func (e opError) Error() string { return fmt.Sprintf("%v: %s", ErrHost, e.code) }
func (e opError) Unwrap() error { return ErrHost }

// Cancel cancels the task that makes ref (an ObjectRef, or an
// ObjectRefGenerator: its generator task). A queued task never runs; a
// running one sees its Get, Wait and Sleep calls return ErrTaskCancelled
// (with force, its worker process is killed); recursive also cancels the
// tasks it submitted. Get on ref then returns an error for which
// errors.Is(err, ErrTaskCancelled). Cancelled tasks are never retried.
func Cancel(ref AnyRef, force, recursive bool) error {
	if err := ref.refErr(); err != nil {
		return err
	}
	req := abi.CancelRequest{Ref: ref.abiRef(), Force: force, Recursive: recursive}
	_, err := hostCall(abi.OpCancel, req.Encode(nil))
	return err
}
