// This file holds registering modules and submitting tasks: Module,
// Function, Call and its options, Submit, SubmitCall and SubmitBatch.

package client

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
)

// Mount makes a host directory visible to a guest.
type Mount struct {
	HostPath, GuestPath string
	ReadOnly            bool
}

// Module describes a registered module.
type Module struct {
	Digest    string
	Functions []Function
	HasMain   bool
}

// Function describes a remote function of a module.
type Function struct {
	Name       string
	NumArgs    int
	NumReturns int
}

// RegisterModule uploads a Wasm module and names it (name may be "").
func (c *Client) RegisterModule(ctx context.Context, wasm []byte, name string, opts ...RegisterOption) (*Module, error) {
	var o registerOptions
	for _, opt := range opts {
		opt(&o)
	}
	res, err := c.svc.RegisterModule(ctx, connect.NewRequest(&rayhostv1.RegisterModuleRequest{Wasm: wasm, Name: name, Replace: o.replace}))
	if err != nil {
		return nil, fromConnect(err)
	}
	m := &Module{Digest: res.Msg.GetDigest(), HasMain: res.Msg.GetHasMain()}
	for _, f := range res.Msg.GetFunctions() {
		m.Functions = append(m.Functions, Function{Name: f.GetName(), NumArgs: int(f.GetNumArgs()), NumReturns: int(f.GetNumReturns())})
	}
	return m, nil
}

// Call is one remote call with its options.
type Call struct {
	Module   string // digest or registered name
	Function string
	// Args are values (encoded as JSON; []byte travels raw; json.RawMessage
	// as is) or ObjectRefs.
	Args       []any
	NumReturns int
	NumCPUs    *float64
	NumGPUs    float64
	Resources  map[string]float64
	// Limits and grants (see ray.MemoryLimit, ray.Timeout, ray.MountDir,
	// ray.Env).
	MemoryLimitBytes int64
	Timeout          time.Duration
	Mounts           []Mount
	Env              map[string]string
	// MaxRetries after a system failure: nil means 3, -1 no limit, 0 never.
	MaxRetries *int32
	// RetryAllExceptions retries application errors too; RetryExceptions
	// only those whose kind or code is listed.
	RetryAllExceptions bool
	RetryExceptions    []string
	DisableEvents      bool
	// Scheduling places the call in a cluster; the zero value is Ray's
	// default hybrid policy.
	Scheduling Scheduling
}

// Scheduling is a scheduling strategy: Spread over the least loaded hosts,
// or run on host NodeID, waiting while it is busy (Soft: elsewhere if that
// host is gone or can never fit the call).
type Scheduling struct {
	Spread bool
	NodeID string
	Soft   bool
}

func (c Call) proto() (*rayhostv1.SubmitRequest, error) {
	req := &rayhostv1.SubmitRequest{Module: c.Module, Function: c.Function, Options: &rayhostv1.TaskOptions{
		NumReturns:         uint32(c.NumReturns),
		Resources:          &rayhostv1.Resources{NumCpus: c.NumCPUs, NumGpus: c.NumGPUs, Custom: c.Resources},
		MaxRetries:         c.MaxRetries,
		RetryAllExceptions: c.RetryAllExceptions,
		RetryExceptions:    c.RetryExceptions,
		DisableEvents:      c.DisableEvents,
		MemoryLimitBytes:   c.MemoryLimitBytes,
		TimeoutMs:          c.Timeout.Milliseconds(),
		Env:                c.Env,
	}}
	if sc := c.Scheduling; sc != (Scheduling{}) {
		req.Options.Scheduling = &rayhostv1.SchedulingStrategy{Spread: sc.Spread, NodeId: sc.NodeID, Soft: sc.Soft}
	}
	for _, m := range c.Mounts {
		req.Options.Mounts = append(req.Options.Mounts, &rayhostv1.Mount{HostPath: m.HostPath, GuestPath: m.GuestPath, ReadOnly: m.ReadOnly})
	}
	for i, a := range c.Args {
		arg, err := encodeArg(a)
		if err != nil {
			return nil, fmt.Errorf("%w: argument %d: %v", ErrInvalidArgument, i+1, err)
		}
		req.Args = append(req.Args, arg)
	}
	return req, nil
}

func encodeArg(a any) (*rayhostv1.Arg, error) {
	switch v := a.(type) {
	case ObjectRef:
		return &rayhostv1.Arg{Kind: &rayhostv1.Arg_Ref{Ref: v.proto()}}, nil
	case []byte:
		return &rayhostv1.Arg{Kind: &rayhostv1.Arg_Raw{Raw: v}}, nil
	case json.RawMessage:
		return &rayhostv1.Arg{Kind: &rayhostv1.Arg_Json{Json: string(v)}}, nil
	}
	b, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	return &rayhostv1.Arg{Kind: &rayhostv1.Arg_Json{Json: string(b)}}, nil
}

// Submit calls function of module with args and returns the ref of its
// result at once.
func (c *Client) Submit(ctx context.Context, module, function string, args ...any) (ObjectRef, error) {
	refs, err := c.SubmitCall(ctx, Call{Module: module, Function: function, Args: args})
	if err != nil {
		return ObjectRef{}, err
	}
	return refs[0], nil
}

// SubmitCall submits one call with options and returns its refs.
func (c *Client) SubmitCall(ctx context.Context, call Call) ([]ObjectRef, error) {
	defer runtime.KeepAlive(call.Args) // the refs among them, until the task holds them
	req, err := call.proto()
	if err != nil {
		return nil, err
	}
	res, err := c.svc.Submit(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, fromConnect(err)
	}
	out := make([]ObjectRef, len(res.Msg.GetRefs()))
	for i, r := range res.Msg.GetRefs() {
		out[i] = c.made(r)
	}
	return out, nil
}

// SubmitBatch submits many calls over one stream, without a round trip per
// call, and returns each call's refs in order.
func (c *Client) SubmitBatch(ctx context.Context, calls []Call) ([][]ObjectRef, error) {
	defer runtime.KeepAlive(calls)
	stream := c.svc.SubmitStream(ctx)
	errc := make(chan error, 1)
	go func() {
		for _, call := range calls {
			req, err := call.proto()
			if err != nil {
				errc <- err
				_ = stream.CloseRequest()
				return
			}
			if err := stream.Send(req); err != nil {
				errc <- nil // the receive side reports the cause
				return
			}
		}
		errc <- stream.CloseRequest()
	}()
	out := make([][]ObjectRef, 0, len(calls))
	for range calls {
		res, err := stream.Receive()
		if err != nil {
			_ = stream.CloseResponse()
			if serr := <-errc; serr != nil {
				return nil, serr
			}
			return nil, fromConnect(err)
		}
		refs := make([]ObjectRef, len(res.GetRefs()))
		for i, r := range res.GetRefs() {
			refs[i] = c.made(r)
		}
		out = append(out, refs)
	}
	if err := <-errc; err != nil {
		return nil, err
	}
	return out, fromConnect(stream.CloseResponse())
}

// RegisterOption changes how RegisterModule registers a module.
type RegisterOption func(*registerOptions)

type registerOptions struct{ replace bool }

// Replace lets RegisterModule re-point a name that already names another
// module. Without it, that fails with ErrExists.
func Replace() RegisterOption { return func(o *registerOptions) { o.replace = true } }
