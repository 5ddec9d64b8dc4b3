package edge

import (
	"context"
	"errors"
	"io"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/internal/ids"
)

// RegisterModule registers a module and lists its functions.
func (e *Edge) RegisterModule(ctx context.Context, req *connect.Request[rayhostv1.RegisterModuleRequest]) (*connect.Response[rayhostv1.RegisterModuleResponse], error) {
	mod, err := e.h.RegisterModule(ctx, req.Msg.GetWasm(), req.Msg.GetName(), req.Msg.GetReplace())
	if err != nil {
		return nil, ToConnect(err)
	}
	res := &rayhostv1.RegisterModuleResponse{Digest: mod.Digest, HasMain: mod.HasMain}
	for _, f := range mod.Functions {
		res.Functions = append(res.Functions, &rayhostv1.FunctionInfo{Name: f.Name, NumArgs: uint32(max(f.NumArgs, 0)), NumReturns: uint32(f.NumReturns), Generator: f.Generator})
	}
	return connect.NewResponse(res), nil
}

func (e *Edge) ref(id ids.ObjectID) *rayhostv1.ObjectRef {
	return &rayhostv1.ObjectRef{Id: id.String(), Owner: e.h.Addr()}
}

// submitOne submits one call from a client.
func (e *Edge) submitOne(ctx context.Context, m *rayhostv1.SubmitRequest) (*rayhostv1.SubmitResponse, error) {
	task, refs, err := e.h.Submit(ctx, callerOf(ctx), m)
	if err != nil {
		return nil, ToConnect(err)
	}
	out := &rayhostv1.SubmitResponse{TaskId: task.String()}
	for _, id := range refs {
		out.Refs = append(out.Refs, e.ref(id))
	}
	return out, nil
}

// Submit submits one call.
func (e *Edge) Submit(ctx context.Context, req *connect.Request[rayhostv1.SubmitRequest]) (*connect.Response[rayhostv1.SubmitResponse], error) {
	res, err := e.submitOne(ctx, req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(res), nil
}

// SubmitStream submits calls as they come, answering each in order; the
// first refused one ends the stream.
func (e *Edge) SubmitStream(ctx context.Context, stream *connect.BidiStream[rayhostv1.SubmitRequest, rayhostv1.SubmitResponse]) error {
	for {
		m, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		res, err := e.submitOne(ctx, m)
		if err != nil {
			return err
		}
		if err := stream.Send(res); err != nil {
			return err
		}
	}
}

// Cancel cancels the task that makes a ref, on the host that owns it.
func (e *Edge) Cancel(ctx context.Context, req *connect.Request[rayhostv1.CancelRequest]) (*connect.Response[rayhostv1.CancelResponse], error) {
	id, err := parseRef(req.Msg.GetRef())
	if err != nil {
		return nil, err
	}
	// Only the owner knows the task: pass the cancel on.
	forwarded, err := e.h.CancelAt(ctx, req.Msg.GetRef().GetOwner(), req.Msg)
	if forwarded {
		if err != nil {
			return nil, ToConnect(err)
		}
		return connect.NewResponse(&rayhostv1.CancelResponse{}), nil
	}
	if err := e.h.Cancel(id, req.Msg.GetForce(), req.Msg.GetRecursive()); err != nil {
		return nil, ToConnect(err)
	}
	return connect.NewResponse(&rayhostv1.CancelResponse{}), nil
}
