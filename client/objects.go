// This file holds what a client does with objects and the tasks that make
// them: ObjectRef and Value, Get, GetValues, GetStream, Put, Wait and
// Cancel.

package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
)

// ObjectRef names an object and its owner. It is a small value, cheap to
// copy; compare refs by ID.
//
// The refs a Client makes (Submit, SubmitCall, SubmitBatch, Put) keep
// their objects alive while they are reachable: the copies of one share a
// handle, and once none is left (runtime.AddCleanup) or Release is called,
// the Client's session lets go of the object, which the host frees when
// nothing else holds it (a task that takes it as an argument, an object
// whose value contains it). A ref made by hand (ObjectRef{ID: …}) or
// decoded from a value (a ref nested in another object's value) is not
// counted by the Client. The host holds a nested ref for the Client's
// session when the Client reads the value that contains it (Get,
// GetValues), until Close: a long-lived Client that reads many values
// with refs inside lets go of those it is done with by Client.Release.
type ObjectRef struct {
	ID    string `json:"object_id"`
	Owner string `json:"owner,omitempty"`
	// h is shared by the copies of a ref this Client made; nil for the
	// others.
	h *refHandle
}

// Release lets go of the object now rather than when the ref becomes
// unreachable: the Client's session stops holding it (sent with the next
// batch of releases, shortly after), and the host frees it once nothing
// else holds it. It covers every copy of the ref; reading the object
// through any of them afterwards may fail with ErrObjectFreed. Releasing
// again, or a ref the Client did not make, does nothing. Client.Release
// releases at once.
func (r ObjectRef) Release() {
	if r.h != nil {
		r.h.st.release()
	}
}

func (r ObjectRef) proto() *rayhostv1.ObjectRef {
	return &rayhostv1.ObjectRef{Id: r.ID, Owner: r.Owner}
}

// refFrom is a ref the Client does not count.
func refFrom(p *rayhostv1.ObjectRef) ObjectRef { return ObjectRef{ID: p.GetId(), Owner: p.GetOwner()} }

// made is a ref the host made for this Client's session: it counts it.
func (c *Client) made(p *rayhostv1.ObjectRef) ObjectRef {
	r := refFrom(p)
	r.h = c.sess.track(r.ID)
	return r
}

// Release lets go of refs now, in one call to the host: its session stops
// holding them (one hold each), and the host frees what nothing else
// holds. It also releases refs decoded from values the Client read (the
// host holds one per read). Refs the session does not hold are skipped by
// the host; an error leaves the tracked ones to be released in the
// background.
func (c *Client) Release(ctx context.Context, refs ...ObjectRef) error {
	req := &rayhostv1.ReleaseRequest{}
	var tracked []string
	for _, r := range refs {
		if r.h != nil {
			if !r.h.st.done.CompareAndSwap(false, true) {
				continue // released already
			}
			tracked = append(tracked, r.ID)
		}
		req.Refs = append(req.Refs, r.proto())
	}
	if len(req.Refs) == 0 {
		return nil
	}
	if _, err := c.svc.Release(ctx, connect.NewRequest(req)); err != nil {
		c.sess.enqueue(tracked...)
		return fromConnect(err)
	}
	return nil
}

func refsProto(refs []ObjectRef) []*rayhostv1.ObjectRef {
	out := make([]*rayhostv1.ObjectRef, len(refs))
	for i, r := range refs {
		out[i] = r.proto()
	}
	return out
}

// Value is an object's encoded value.
type Value struct {
	// JSON is set for JSON values.
	JSON json.RawMessage
	// Raw is set for byte strings.
	Raw []byte
	// IsRaw tells which of the two is set.
	IsRaw bool
}

// Decode decodes v into out: a byte string into *[]byte (or *string), JSON
// into anything encoding/json can fill.
func (v Value) Decode(out any) error {
	if v.IsRaw {
		switch p := out.(type) {
		case *[]byte:
			*p = v.Raw
			return nil
		case *string:
			*p = string(v.Raw)
			return nil
		}
		return fmt.Errorf("%w: a byte string into %T", ErrInvalidArgument, out)
	}
	if err := json.Unmarshal(v.JSON, out); err != nil {
		return fmt.Errorf("%w: decoding %T: %v", ErrInvalidArgument, out, err)
	}
	return nil
}

func valueFrom(p *rayhostv1.Value) Value {
	if raw, ok := p.GetKind().(*rayhostv1.Value_Raw); ok {
		return Value{Raw: raw.Raw, IsRaw: true}
	}
	return Value{JSON: json.RawMessage(p.GetJson())}
}

// GetValues waits for refs (ctx's deadline bounds the wait) and returns
// their values.
func (c *Client) GetValues(ctx context.Context, refs []ObjectRef) ([]Value, error) {
	defer runtime.KeepAlive(refs) // held until the host answered
	req := &rayhostv1.GetRequest{Refs: refsProto(refs)}
	var res *connect.Response[rayhostv1.GetResponse]
	var err error
	// A Get only reads: a connection that broke under it (a reset, a
	// connection the host dropped while starved) is retried, a few times;
	// a host that said it is shutting down is not asked again.
	for attempt := 0; ; attempt++ {
		if d, ok := ctx.Deadline(); ok {
			req.TimeoutMs = max(time.Until(d).Milliseconds(), 1)
		}
		res, err = c.svc.Get(ctx, connect.NewRequest(req))
		if err == nil || attempt == 2 || ctx.Err() != nil {
			break
		}
		if e := fromConnect(err); !errors.Is(e, ErrUnavailable) || errors.Is(e, ErrHostShuttingDown) {
			break
		}
		select {
		case <-time.After(time.Duration(100<<attempt) * time.Millisecond):
		case <-ctx.Done():
		}
	}
	if err != nil {
		return nil, fromConnect(err)
	}
	out := make([]Value, len(res.Msg.GetValues()))
	for i, v := range res.Msg.GetValues() {
		out[i] = valueFrom(v)
	}
	return out, nil
}

// Get waits for ref and decodes its value into out.
func (c *Client) Get(ctx context.Context, ref ObjectRef, out any) error {
	vals, err := c.GetValues(ctx, []ObjectRef{ref})
	if err != nil {
		return err
	}
	return vals[0].Decode(out)
}

// GetStream writes ref's value to w chunk by chunk, for values too large
// for one message; it returns the codec ("json" or "raw").
func (c *Client) GetStream(ctx context.Context, ref ObjectRef, w io.Writer) (string, error) {
	defer runtime.KeepAlive(ref)
	stream, err := c.svc.GetStream(ctx, connect.NewRequest(&rayhostv1.GetStreamRequest{Ref: ref.proto()}))
	if err != nil {
		return "", fromConnect(err)
	}
	defer stream.Close()
	codec := ""
	for stream.Receive() {
		if h := stream.Msg().GetHeader(); h != nil {
			codec = h.GetCodec()
		}
		if _, err := w.Write(stream.Msg().GetChunk()); err != nil {
			return codec, err
		}
	}
	return codec, fromConnect(stream.Err())
}

// Put stores v ([]byte raw, anything else as JSON) and returns its ref.
func (c *Client) Put(ctx context.Context, v any) (ObjectRef, error) {
	defer runtime.KeepAlive(v) // the refs it contains, until the host has them
	arg, err := encodeArg(v)
	if err != nil {
		return ObjectRef{}, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	val := &rayhostv1.Value{}
	switch k := arg.GetKind().(type) {
	case *rayhostv1.Arg_Raw:
		val.Kind = &rayhostv1.Value_Raw{Raw: k.Raw}
	case *rayhostv1.Arg_Json:
		val.Kind = &rayhostv1.Value_Json{Json: k.Json}
	default:
		return ObjectRef{}, fmt.Errorf("%w: cannot put an ObjectRef", ErrInvalidArgument)
	}
	res, err := c.svc.Put(ctx, connect.NewRequest(&rayhostv1.PutRequest{Value: val}))
	if err != nil {
		return ObjectRef{}, fromConnect(err)
	}
	return c.made(res.Msg.GetRef()), nil
}

// Wait returns when numReturns of refs are ready or timeout passes
// (timeout < 0: no limit; 0: just look). Both lists keep the input order.
// No refs: two empty lists, as Ray's ray.wait([]).
//
// The refs returned are the ones given (copies sharing their handles).
func (c *Client) Wait(ctx context.Context, refs []ObjectRef, numReturns int, timeout time.Duration) (ready, notReady []ObjectRef, err error) {
	req := &rayhostv1.WaitRequest{Refs: refsProto(refs), NumReturns: uint32(numReturns), TimeoutMs: timeout.Milliseconds()}
	if timeout < 0 {
		req.TimeoutMs = -1
	}
	res, err := c.svc.Wait(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, nil, fromConnect(err)
	}
	given := make(map[string]ObjectRef, len(refs))
	for _, r := range refs {
		if _, ok := given[r.ID]; !ok {
			given[r.ID] = r
		}
	}
	same := func(p *rayhostv1.ObjectRef) ObjectRef {
		if r, ok := given[p.GetId()]; ok {
			return r
		}
		return refFrom(p)
	}
	for _, r := range res.Msg.GetReady() {
		ready = append(ready, same(r))
	}
	for _, r := range res.Msg.GetNotReady() {
		notReady = append(notReady, same(r))
	}
	return ready, notReady, nil
}

// Cancel cancels the task that makes ref: force kills its worker process;
// recursive also cancels the tasks it submitted.
func (c *Client) Cancel(ctx context.Context, ref ObjectRef, force, recursive bool) error {
	defer runtime.KeepAlive(ref)
	_, err := c.svc.Cancel(ctx, connect.NewRequest(&rayhostv1.CancelRequest{Ref: ref.proto(), Force: force, Recursive: recursive}))
	return fromConnect(err)
}
