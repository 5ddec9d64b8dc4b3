// Package client is the Go client of a rayhost host's Connect API.
//
//	c := client.New("127.0.0.1:6380")
//	mod, err := c.RegisterModule(ctx, wasm, "retrieve")
//	ref, err := c.Submit(ctx, "retrieve", "retrieve_task", 3)
//	var item Item
//	err = c.Get(ctx, ref, &item)
//
// Errors wrap the sentinels below; a failed task's error is a *TaskError
// (the guest SDK's *ray.TaskError: one type), so errors.Is(err,
// ray.ErrTaskCancelled) works the same in a driver inside the cluster and
// in a native client.
package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/internal/httpc"
	"github.com/rayhost/rayhost/internal/kinds"
)

// Sentinel errors, one per Connect code the host uses. The task sentinels
// (ErrGetTimeout, ErrTaskFailed, ErrTaskCancelled, ErrWorkerDied,
// ErrTaskTimeout, ErrObjectLost, ErrOwnerDied) are the same values as the
// guest SDK's (ray.ErrWorkerDied…), so errors.Is works with either.
var (
	ErrNotFound        = kinds.ErrNotFound
	ErrInvalidArgument = kinds.ErrInvalidArgument
	ErrGetTimeout      = kinds.ErrGetTimeout
	ErrTaskFailed      = kinds.ErrTaskFailed
	ErrTaskCancelled   = kinds.ErrTaskCancelled
	ErrWorkerDied      = kinds.ErrWorkerDied
	ErrTaskTimeout     = kinds.ErrTaskTimeout
	ErrObjectLost      = kinds.ErrObjectLost
	ErrOwnerDied       = kinds.ErrOwnerDied
	ErrPermission      = kinds.ErrPermission
	ErrUnavailable     = kinds.ErrUnavailable
	ErrUnauthenticated = kinds.ErrUnauthenticated
	// ErrResourceExhausted: a limit was hit (a message or value too large,
	// the store full, a cap on tasks, drivers or modules); the message says
	// which.
	ErrResourceExhausted = kinds.ErrResourceExhausted
	// ErrTooLarge is ErrResourceExhausted, by its older name.
	ErrTooLarge = ErrResourceExhausted
	ErrHost     = kinds.ErrHost
	// ErrExists: a module name names another module (register with
	// Replace to re-point it).
	ErrExists = kinds.ErrExists
)

// TaskError is a failed task's error: the same type as the guest SDK's
// ray.TaskError, so errors.As(err, new(*ray.TaskError)) works on what a
// Client returns.
type TaskError = kinds.TaskError

// Client talks to one host. It is safe for concurrent use.
type Client struct {
	svc  rayhostv1connect.TaskServiceClient
	base string
}

// Option configures a Client.
type Option interface{ apply(*options) }

type options struct {
	httpClient *http.Client
	maxBytes   int
	token      string
	tlsConfig  *tls.Config
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithHTTPClient sets the HTTP client (for TLS, say).
func WithHTTPClient(c *http.Client) Option { return optionFunc(func(o *options) { o.httpClient = c }) }

// WithToken sends the cluster token with every call.
func WithToken(token string) Option { return optionFunc(func(o *options) { o.token = token }) }

// WithTLS talks HTTPS (HTTP/2) with cfg; an address without a scheme then
// gets https://.
func WithTLS(cfg *tls.Config) Option { return optionFunc(func(o *options) { o.tlsConfig = cfg }) }

// WithMaxMessageBytes bounds messages in both directions (default 256 MiB).
func WithMaxMessageBytes(n int) Option { return optionFunc(func(o *options) { o.maxBytes = n }) }

// New returns a client of the host at addr ("127.0.0.1:6380" or a URL).
func New(addr string, opts ...Option) *Client {
	o := options{maxBytes: 256 << 20}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.httpClient == nil {
		o.httpClient = httpc.New(o.tlsConfig)
	}
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
		if o.tlsConfig != nil {
			base = "https://" + addr
		}
	}
	// No gzip: objects are often incompressible, and compressing a large
	// value costs the host CPU its tasks need (reading 64 MiB through a
	// host ran at 130 MB/s with it).
	copts := []connect.ClientOption{connect.WithReadMaxBytes(o.maxBytes), connect.WithSendMaxBytes(o.maxBytes),
		connect.WithAcceptCompression("gzip", nil, nil)}
	if o.token != "" {
		copts = append(copts, connect.WithInterceptors(httpc.Bearer(o.token)))
	}
	return &Client{base: base, svc: rayhostv1connect.NewTaskServiceClient(o.httpClient, base, copts...)}
}

// NewHTTPClient returns the HTTP client the Go client uses: HTTP/2 over
// TLS with cfg, or without TLS (h2c) when cfg is nil. Hosts use it to call
// each other.
func NewHTTPClient(cfg *tls.Config) *http.Client { return httpc.New(cfg) }

// TokenInterceptor adds "Authorization: Bearer <token>" to every call.
func TokenInterceptor(token string) connect.Interceptor { return httpc.Bearer(token) }

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
		out[i] = refFrom(r)
	}
	return out, nil
}

// SubmitBatch submits many calls over one stream, without a round trip per
// call, and returns each call's refs in order.
func (c *Client) SubmitBatch(ctx context.Context, calls []Call) ([][]ObjectRef, error) {
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
			refs[i] = refFrom(r)
		}
		out = append(out, refs)
	}
	if err := <-errc; err != nil {
		return nil, err
	}
	return out, fromConnect(stream.CloseResponse())
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
	// connection the host dropped while starved) is retried, a few times.
	for attempt := 0; ; attempt++ {
		if d, ok := ctx.Deadline(); ok {
			req.TimeoutMs = max(time.Until(d).Milliseconds(), 1)
		}
		res, err = c.svc.Get(ctx, connect.NewRequest(req))
		if err == nil || attempt == 2 || !errors.Is(fromConnect(err), ErrUnavailable) || ctx.Err() != nil {
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

// LogLine is a line of guest output from a run.
type LogLine struct {
	TaskID, Function, Host, Stream string
	Data                           []byte
}

// RunProgress counts the tasks a driver started, transitively.
type RunProgress struct {
	Submitted, Finished, Failed, Cancelled int
}

// RunOption configures Run.
type RunOption func(*runOptions)

type runOptions struct {
	onProgress func(RunProgress)
	mounts     []Mount
	env        map[string]string
}

// WithGrants grants the driver directories and environment variables
// (within the host's allowed directories); its tasks may be granted these
// or less.
func WithGrants(mounts []Mount, env map[string]string) RunOption {
	return func(o *runOptions) { o.mounts, o.env = mounts, env }
}

// WithProgress calls fn with the driver's task counts as they change
// (about twice a second at most).
func WithProgress(fn func(RunProgress)) RunOption {
	return func(o *runOptions) { o.onProgress = fn }
}

// Run runs module's driver on the host, calling onLog with the output of
// the driver and its tasks as it comes. It returns the driver's error.
func (c *Client) Run(ctx context.Context, module string, onLog func(LogLine), opts ...RunOption) error {
	var o runOptions
	for _, opt := range opts {
		opt(&o)
	}
	req := &rayhostv1.RunRequest{Module: module, Progress: o.onProgress != nil, Env: o.env}
	for _, m := range o.mounts {
		req.Mounts = append(req.Mounts, &rayhostv1.Mount{HostPath: m.HostPath, GuestPath: m.GuestPath, ReadOnly: m.ReadOnly})
	}
	stream, err := c.svc.Run(ctx, connect.NewRequest(req))
	if err != nil {
		return fromConnect(err)
	}
	defer stream.Close()
	for stream.Receive() {
		switch ev := stream.Msg().GetEvent().(type) {
		case *rayhostv1.RunResponse_Progress:
			if o.onProgress != nil {
				p := ev.Progress
				o.onProgress(RunProgress{Submitted: int(p.GetSubmitted()), Finished: int(p.GetFinished()),
					Failed: int(p.GetFailed()), Cancelled: int(p.GetCancelled())})
			}
		case *rayhostv1.RunResponse_Log:
			if onLog != nil {
				l := ev.Log
				onLog(LogLine{TaskID: l.GetTaskId(), Function: l.GetFunction(), Host: l.GetHost(), Stream: l.GetStream(), Data: l.GetData()})
			}
		case *rayhostv1.RunResponse_Result:
			if msg := ev.Result.GetError(); msg != "" {
				return fmt.Errorf("%w: the driver failed: %s", ErrTaskFailed, msg)
			}
			return nil
		}
	}
	if err := stream.Err(); err != nil {
		return fromConnect(err)
	}
	return fmt.Errorf("%w: the run ended without a result", ErrHost)
}

// Health describes a host.
type Health struct {
	HostID, Address          string
	Workers                  int
	TotalCPUs, AvailableCPUs float64
	TotalGPUs, AvailableGPUs float64
	Custom, AvailableCustom  map[string]float64
	// WorkerConfinement lists the OS confinement layers of the host's
	// worker processes, in force or not, with why (docs/SECURITY.md,
	// "Worker confinement").
	WorkerConfinement []ConfinementLayer
}

// ConfinementLayer is one layer of a worker's OS confinement.
type ConfinementLayer struct {
	Name   string
	Active bool
	Detail string // what it does, or why it is not in force
}

// Health asks the host how it is.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	res, err := c.svc.Health(ctx, connect.NewRequest(&rayhostv1.HealthRequest{}))
	if err != nil {
		return nil, fromConnect(err)
	}
	m := res.Msg
	var layers []ConfinementLayer
	for _, l := range m.GetWorkerConfinement() {
		layers = append(layers, ConfinementLayer{Name: l.GetName(), Active: l.GetActive(), Detail: l.GetDetail()})
	}
	return &Health{
		HostID: m.GetHostId(), Address: m.GetAddress(), Workers: int(m.GetWorkers()),
		TotalCPUs: m.GetTotal().GetNumCpus(), AvailableCPUs: m.GetAvailable().GetNumCpus(),
		TotalGPUs: m.GetTotal().GetNumGpus(), AvailableGPUs: m.GetAvailable().GetNumGpus(),
		Custom: m.GetTotal().GetCustom(), AvailableCustom: m.GetAvailable().GetCustom(),
		WorkerConfinement: layers,
	}, nil
}

// RegisterOption changes how RegisterModule registers a module.
type RegisterOption func(*registerOptions)

type registerOptions struct{ replace bool }

// Replace lets RegisterModule re-point a name that already names another
// module. Without it, that fails with ErrExists.
func Replace() RegisterOption { return func(o *registerOptions) { o.replace = true } }
