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
	"net/http"
	"strings"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/internal/httpc"
	"github.com/rayhost/rayhost/internal/kinds"
)

// Sentinel errors, one per Connect code the host uses. The task sentinels
// (ErrGetTimeout, ErrTaskFailed, ErrTaskCancelled, ErrWorkerDied,
// ErrTaskTimeout, ErrObjectLost, ErrOwnerDied) and ErrHostShuttingDown are
// the same values as the guest SDK's (ray.ErrWorkerDied…), so errors.Is
// works with either.
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
	ErrObjectFreed     = kinds.ErrObjectFreed
	ErrPermission      = kinds.ErrPermission
	ErrUnavailable     = kinds.ErrUnavailable
	// ErrHostShuttingDown: the host the call waited on (a Get, a Wait, a
	// Run) is shutting down; nobody cancelled anything, and another host,
	// or this one once it is back, may answer. It matches ErrUnavailable
	// too, never ErrTaskCancelled.
	ErrHostShuttingDown = kinds.ErrHostShuttingDown
	ErrUnauthenticated  = kinds.ErrUnauthenticated
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
