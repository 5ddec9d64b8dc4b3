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
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
)

// ObjectRef names an object and its owner.
type ObjectRef struct {
	ID    string `json:"object_id"`
	Owner string `json:"owner,omitempty"`
}

func (r ObjectRef) proto() *rayhostv1.ObjectRef {
	return &rayhostv1.ObjectRef{Id: r.ID, Owner: r.Owner}
}

func refFrom(p *rayhostv1.ObjectRef) ObjectRef { return ObjectRef{ID: p.GetId(), Owner: p.GetOwner()} }

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
	return refFrom(res.Msg.GetRef()), nil
}

// Wait returns when numReturns of refs are ready or timeout passes
// (timeout < 0: no limit; 0: just look). Both lists keep the input order.
// No refs: two empty lists, as Ray's ray.wait([]).
func (c *Client) Wait(ctx context.Context, refs []ObjectRef, numReturns int, timeout time.Duration) (ready, notReady []ObjectRef, err error) {
	req := &rayhostv1.WaitRequest{Refs: refsProto(refs), NumReturns: uint32(numReturns), TimeoutMs: timeout.Milliseconds()}
	if timeout < 0 {
		req.TimeoutMs = -1
	}
	res, err := c.svc.Wait(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, nil, fromConnect(err)
	}
	for _, r := range res.Msg.GetReady() {
		ready = append(ready, refFrom(r))
	}
	for _, r := range res.Msg.GetNotReady() {
		notReady = append(notReady, refFrom(r))
	}
	return ready, notReady, nil
}

// Cancel cancels the task that makes ref: force kills its worker process;
// recursive also cancels the tasks it submitted.
func (c *Client) Cancel(ctx context.Context, ref ObjectRef, force, recursive bool) error {
	_, err := c.svc.Cancel(ctx, connect.NewRequest(&rayhostv1.CancelRequest{Ref: ref.proto(), Force: force, Recursive: recursive}))
	return fromConnect(err)
}
