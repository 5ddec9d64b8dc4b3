package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/kinds"
)

func parseRef(r *rayhostv1.ObjectRef) (ids.ObjectID, error) {
	if r == nil {
		return ids.ObjectID{}, Invalid("missing ObjectRef")
	}
	id, err := ids.ParseObjectID(r.GetId())
	if err != nil {
		return id, Invalid("%v", err)
	}
	return id, nil
}

func parseRefs(refs []*rayhostv1.ObjectRef) ([]ids.ObjectID, error) {
	out := make([]ids.ObjectID, len(refs))
	for i, r := range refs {
		id, err := parseRef(r)
		if err != nil {
			return nil, err
		}
		out[i] = id
	}
	return out, nil
}

// borrow makes the refs other hosts own known here.
func (e *Edge) borrow(ctx context.Context, refs []*rayhostv1.ObjectRef, parsed []ids.ObjectID) {
	for i, r := range refs {
		e.h.Borrow(ctx, abi.Ref{ID: parsed[i], Owner: r.GetOwner()})
	}
}

func timeoutOf(ms int64) time.Duration {
	if ms <= 0 {
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}

// valueProto is v as clients get it: raw bytes, or JSON (an "ints" or
// "cbor" value converted; one without a JSON form is an error).
func valueProto(v abi.Value) (*rayhostv1.Value, error) {
	js, err := clientValue(v)
	if err != nil {
		return nil, err
	}
	if js.Codec == abi.CodecRaw {
		return &rayhostv1.Value{Kind: &rayhostv1.Value_Raw{Raw: js.Data}}, nil
	}
	return &rayhostv1.Value{Kind: &rayhostv1.Value_Json{Json: string(js.Data)}}, nil
}

// clientValue is v converted to JSON if it is of a codec clients do not
// get.
func clientValue(v abi.Value) (abi.Value, error) {
	js, err := v.ToJSON()
	if err != nil {
		return v, noJSON(err)
	}
	return js, nil
}

// noJSON is the error of a read of a value without a JSON form (a CBOR
// value holding a NaN, or one a guest wrote wrong): only guests read it.
func noJSON(err error) error {
	return ToConnect(kinds.Classed(kinds.ErrInvalidArgument,
		fmt.Sprintf("the value has no JSON form for a client (guests read it): %v", err)))
}

// MaxCBORStream is the default bound of a "cbor" value GetStream
// converts to JSON (Config.MaxCBORStream): it is converted whole, not
// chunk by chunk.
const MaxCBORStream = 64 << 20

// tooLarge is the error of a Get whose values one message cannot carry.
func tooLarge(size int64) error {
	return ToConnect(kinds.Classed(kinds.ErrResourceExhausted,
		fmt.Sprintf("the values are %d bytes, more than one message may carry: use GetStream", size)))
}

// Get returns the values of objects, waiting for them; a failed task's
// object fails the call with its TaskError.
func (e *Edge) Get(ctx context.Context, req *connect.Request[rayhostv1.GetRequest]) (*connect.Response[rayhostv1.GetResponse], error) {
	refs, err := parseRefs(req.Msg.GetRefs())
	if err != nil {
		return nil, err
	}
	e.borrow(ctx, req.Msg.GetRefs(), refs)
	timeout := timeoutOf(req.Msg.GetTimeoutMs())
	if _, err := e.h.WaitReady(ctx, refs, len(refs), true, timeout); err != nil {
		return nil, failed(ctx, err)
	}
	// Refuse values too large for one message before reading (or pulling)
	// any of them.
	var size int64
	limit := int64(e.cfg.MaxMessageBytes - (1 << 20))
	for _, id := range refs {
		if n, ok := e.h.Size(ctx, id); ok {
			if n < 0 || n > limit-size { // also a size a peer lied about
				return nil, tooLarge(max(n, size))
			}
			size += n
		}
	}
	vals, err := e.h.Get(ctx, refs, timeout)
	if err != nil {
		return nil, failed(ctx, err)
	}
	res := &rayhostv1.GetResponse{Values: make([]*rayhostv1.Value, len(vals))}
	size = 0
	for i, v := range vals {
		if v.Codec == abi.CodecError {
			return nil, TaskFailure(v.Data)
		}
		if res.Values[i], err = valueProto(v); err != nil {
			return nil, err
		}
		size += int64(len(res.Values[i].GetJson()) + len(res.Values[i].GetRaw()))
	}
	if size > limit {
		return nil, tooLarge(size)
	}
	e.h.Read(callerOf(ctx), vals)
	return connect.NewResponse(res), nil
}

// GetStream sends one object in chunks, however large.
func (e *Edge) GetStream(ctx context.Context, req *connect.Request[rayhostv1.GetStreamRequest], stream *connect.ServerStream[rayhostv1.GetStreamResponse]) error {
	id, err := parseRef(req.Msg.GetRef())
	if err != nil {
		return err
	}
	e.borrow(ctx, []*rayhostv1.ObjectRef{req.Msg.GetRef()}, []ids.ObjectID{id})
	if _, err := e.h.WaitReady(ctx, []ids.ObjectID{id}, 1, true, timeoutOf(req.Msg.GetTimeoutMs())); err != nil {
		return failed(ctx, err)
	}
	// Small values are in memory; the rest streams from the store chunk by
	// chunk, never whole (pulled here first if other hosts hold it).
	v, inMemory, err := e.h.Local(ctx, id)
	if gone := goneFailure(id, err); gone != nil {
		return gone
	}
	if err != nil {
		return failed(ctx, err)
	}
	e.h.Fetched(id)
	if inMemory {
		if v.Codec == abi.CodecError {
			return TaskFailure(v.Data)
		}
		e.h.Read(callerOf(ctx), []abi.Value{v})
		if v, err = clientValue(v); err != nil {
			return err
		}
		return stream.Send(&rayhostv1.GetStreamResponse{
			Header: &rayhostv1.ObjectHeader{Codec: v.Codec.String(), Size: int64(len(v.Data))}, Chunk: v.Data})
	}
	// An "ints" value streams as its JSON, converted chunk by chunk (its
	// size is not known before the end: the header says -1).
	// A "cbor" value is gathered (up to Config.MaxCBORStream) and sent as its
	// JSON, in chunks of 1 MiB (its size in the first header).
	var ints *abi.IntsJSONWriter
	var cbor []byte
	isCBOR, sent := false, false
	send := func(chunk []byte) error { return stream.Send(&rayhostv1.GetStreamResponse{Chunk: chunk}) }
	err = e.h.Stream(ctx, id, func(hdr *rayhostv1.ObjectHeader, chunk []byte) error {
		sent = true
		if hdr != nil && hdr.GetCodec() == abi.CodecInts.String() {
			ints = abi.NewIntsJSONWriter(send)
			if err := stream.Send(&rayhostv1.GetStreamResponse{Header: &rayhostv1.ObjectHeader{Codec: abi.CodecJSON.String(), Size: -1}}); err != nil {
				return err
			}
		}
		if hdr != nil && hdr.GetCodec() == abi.CodecCBOR.String() {
			if hdr.GetSize() > e.cfg.MaxCBORStream {
				return e.cborTooLarge(hdr.GetSize())
			}
			isCBOR = true
			cbor = make([]byte, 0, max(hdr.GetSize(), 0))
		}
		switch {
		case ints != nil:
			return ints.Write(chunk)
		case isCBOR:
			if int64(len(cbor))+int64(len(chunk)) > e.cfg.MaxCBORStream {
				return e.cborTooLarge(int64(len(cbor)) + int64(len(chunk)))
			}
			cbor = append(cbor, chunk...)
			return nil
		}
		return stream.Send(&rayhostv1.GetStreamResponse{Header: hdr, Chunk: chunk})
	})
	if err == nil && ints != nil {
		err = ints.Close()
	}
	if err == nil && isCBOR {
		err = e.sendCBOR(stream, cbor)
	}
	if gone := goneFailure(id, err); gone != nil && !sent {
		return gone // found gone while pulled from a peer
	}
	return err
}

func (e *Edge) cborTooLarge(size int64) error {
	return ToConnect(kinds.Classed(kinds.ErrResourceExhausted, fmt.Sprintf(
		"the value is %d bytes of cbor, more than the %d a client may read as JSON (guests read it)", size, e.cfg.MaxCBORStream)))
}

// sendCBOR sends a whole "cbor" value as its JSON.
func (e *Edge) sendCBOR(stream *connect.ServerStream[rayhostv1.GetStreamResponse], data []byte) error {
	js, err := clientValue(abi.Value{Codec: abi.CodecCBOR, Data: data})
	if err != nil {
		return err
	}
	const chunk = 1 << 20
	for i := 0; i == 0 || i < len(js.Data); i += chunk {
		msg := &rayhostv1.GetStreamResponse{Chunk: js.Data[i:min(i+chunk, len(js.Data))]}
		if i == 0 {
			msg.Header = &rayhostv1.ObjectHeader{Codec: abi.CodecJSON.String(), Size: int64(len(js.Data))}
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
	return nil
}

// goneFailure is the task failure a read of id that failed with err
// answers when err says the object is gone (lost, or its owner died);
// nil for any other error.
func goneFailure(id ids.ObjectID, err error) error {
	kind := abi.ErrorObjectLost
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kinds.ErrOwnerDied):
		kind = abi.ErrorOwnerDied
	case !errors.Is(err, kinds.ErrObjectLost):
		return nil
	}
	return TaskFailure((&abi.TaskError{Kind: kind, TaskID: id.Task().String(), Message: err.Error()}).Encode().Data)
}

// Put stores a client's value as a new object this host owns.
func (e *Edge) Put(ctx context.Context, req *connect.Request[rayhostv1.PutRequest]) (*connect.Response[rayhostv1.PutResponse], error) {
	var v abi.Value
	switch k := req.Msg.GetValue().GetKind().(type) {
	case *rayhostv1.Value_Json:
		if !json.Valid([]byte(k.Json)) {
			return nil, Invalid("value: not valid JSON")
		}
		v = abi.Value{Codec: abi.CodecJSON, Data: []byte(k.Json)}
	case *rayhostv1.Value_Raw:
		v = abi.Value{Codec: abi.CodecRaw, Data: k.Raw}
	default:
		return nil, Invalid("value: empty (set json or raw)")
	}
	id := ids.NewTaskID().Put(0)
	if err := e.h.Put(ctx, callerOf(ctx), id, v); err != nil {
		return nil, ToConnect(err)
	}
	return connect.NewResponse(&rayhostv1.PutResponse{Ref: e.ref(id)}), nil
}

// Wait returns which of refs are ready once num_returns of them are, or
// at the timeout (not an error).
func (e *Edge) Wait(ctx context.Context, req *connect.Request[rayhostv1.WaitRequest]) (*connect.Response[rayhostv1.WaitResponse], error) {
	refs, err := parseRefs(req.Msg.GetRefs())
	if err != nil {
		return nil, err
	}
	e.borrow(ctx, req.Msg.GetRefs(), refs)
	n := int(req.Msg.GetNumReturns())
	if n == 0 {
		n = 1
	}
	if len(refs) == 0 {
		// Ray's ray.wait([]) returns ([], []).
		return connect.NewResponse(&rayhostv1.WaitResponse{}), nil
	}
	if n > len(refs) {
		return nil, Invalid("num_returns %d not in 1..%d", n, len(refs))
	}
	seen := make(map[ids.ObjectID]bool, len(refs))
	for _, id := range refs {
		if seen[id] {
			return nil, Invalid("ref %s given twice", id)
		}
		seen[id] = true
	}
	timeout := time.Duration(req.Msg.GetTimeoutMs()) * time.Millisecond
	if req.Msg.GetTimeoutMs() < 0 {
		timeout = -1
	}
	ready, err := e.h.WaitReady(ctx, refs, n, false, timeout)
	if err != nil && !errors.Is(err, kinds.ErrGetTimeout) {
		return nil, failed(ctx, err)
	}
	res := &rayhostv1.WaitResponse{}
	taken := 0
	for i, id := range refs {
		if ready[i] && taken < n {
			taken++
			res.Ready = append(res.Ready, e.ref(id))
		} else {
			res.NotReady = append(res.NotReady, e.ref(id))
		}
	}
	return connect.NewResponse(res), nil
}
