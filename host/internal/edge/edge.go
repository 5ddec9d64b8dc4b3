package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// Host is what the edge needs of the host behind it. Its errors are the
// host's sentinels (or wrap them); the edge maps them to Connect codes.
type Host interface {
	// Addr is the host's advertised API address: the owner of the refs
	// the edge hands out.
	Addr() string
	// RegisterModule registers a module's bytes under name (replace
	// re-points a taken name) and tells the peers about it.
	RegisterModule(ctx context.Context, wasm []byte, name string, replace bool) (Module, error)
	// LookupModule finds a module by digest or name.
	LookupModule(ctx context.Context, ref string) (Module, error)
	// BeginCall starts a call of c (BeginCall's Caller has its Holder
	// set). In a session, the call refreshes it, making it if it is new
	// (an error of kinds.ErrResourceExhausted's class past the host's
	// caps), and keeps it alive until end is called.
	BeginCall(c Caller) (_ Caller, end func(), err error)
	// Release lets go of one of c's holds on each of refs; what c does not
	// hold is skipped.
	Release(c Caller, refs []ids.ObjectID)
	// EndSession ends c's session, releasing everything it holds; false if
	// c has no such session.
	EndSession(c Caller) bool
	// Submit checks a client's call against its function and submits it:
	// the task's ID and the refs the client gets (its returns, or a
	// generator's first item), held by c.
	Submit(ctx context.Context, c Caller, req *rayhostv1.SubmitRequest) (ids.TaskID, []ids.ObjectID, error)
	// Borrow makes a ref another host owns known here.
	Borrow(ctx context.Context, ref abi.Ref)
	// WaitReady waits until need of refs are ready (failFast: a failed one
	// ends the wait), or timeout (negative: none) passes, with
	// kinds.ErrGetTimeout's class.
	WaitReady(ctx context.Context, refs []ids.ObjectID, need int, failFast bool, timeout time.Duration) ([]bool, error)
	// Size is the size of an object this host holds, if it does, as a
	// client gets it (an "ints" value: the most its JSON may take).
	Size(ctx context.Context, id ids.ObjectID) (int64, bool)
	// Get returns the values of ready objects.
	Get(ctx context.Context, refs []ids.ObjectID, timeout time.Duration) ([]abi.Value, error)
	// Read notes that c read vals: c holds the refs inside them, as refs
	// it made.
	Read(c Caller, vals []abi.Value)
	// Local makes a ready object readable and returns it if it is small
	// enough to be in memory; the others Stream reads (pulling them from a
	// peer as they stream, if need be). Its error matches
	// kinds.ErrObjectLost or kinds.ErrOwnerDied when the object is gone.
	Local(ctx context.Context, id ids.ObjectID) (v abi.Value, inMemory bool, err error)
	// Fetched notes that a client fetched the object.
	Fetched(id ids.ObjectID)
	// Stream sends an object chunk by chunk: from the store, or as it is
	// pulled from a peer. Its error matches kinds.ErrObjectLost or
	// kinds.ErrOwnerDied when the object turns out gone before a chunk
	// was sent.
	Stream(ctx context.Context, id ids.ObjectID, send func(*rayhostv1.ObjectHeader, []byte) error) error
	// Put stores a client's value under id, held by c.
	Put(ctx context.Context, c Caller, id ids.ObjectID, v abi.Value) error
	// CancelAt passes a cancel on to the host at owner, which owns the
	// task; forwarded is false when owner is this host (or there is no
	// cluster), and the cancel is this host's.
	CancelAt(ctx context.Context, owner string, req *rayhostv1.CancelRequest) (forwarded bool, err error)
	// Cancel cancels the task that makes id.
	Cancel(id ids.ObjectID, force, recursive bool) error
	// RunDriver starts mod's driver with grants (checked against what the
	// host allows), its output going to job; stop cancels it.
	RunDriver(ctx context.Context, mod Module, grants abi.Grants, job *Job) (stop func(), err error)
	// Go runs fn in a goroutine the host waits for when it closes.
	Go(fn func())
	// Status is the host's identity and resources, for Health.
	Status() Status
	// TaskEvents returns the recent task events, oldest first, and how
	// many older ones were dropped.
	TaskEvents() ([]TaskEvent, uint64)
	// TaskStates are the states a task event may be in.
	TaskStates() []string
	// Actors lists the actors this host owns.
	Actors() []Actor
	// ClusterStatus lists the members of the host's cluster, itself first,
	// and the infeasible demand: the tasks it owns that no member can run
	// now, by resource shape.
	ClusterStatus() ([]*rayhostv1.Member, []*rayhostv1.Demand)
	// Memory lists up to limit of the objects the host counts references
	// to, largest first, each with why it is alive, and totals over all
	// of them. It fails only if ctx ends.
	Memory(ctx context.Context, limit int) (*rayhostv1.MemoryResponse, error)
}

// Module is a registered module, as the edge sees it.
type Module struct {
	Digest    string
	HasMain   bool
	Functions []abi.FunctionInfo
	// Handle is the host's own module, passed back to RunDriver.
	Handle any
}

// Status is what Health reports.
type Status struct {
	ID                string
	Workers           int
	Total, Available  scheduler.Resources
	WorkerConfinement []*rayhostv1.ConfinementLayer
}

// TaskEvent is one event of a task (see host.TaskEvent).
type TaskEvent struct {
	Task, Parent ids.TaskID
	Attempt      uint32
	Function     string
	State        string
	Time         time.Time
	Worker       int
	Host         string
	Message      string
	Grants       string
}

// Actor is one actor, for ListActors.
type Actor struct {
	ID, Class, Name, Namespace, State string
	Host                              string
	Calls, Restarts, Queued           int
	WorkerPID                         int
}

// Config configures the edge.
type Config struct {
	// MaxMessageBytes bounds a message in either direction; a Get's values
	// must fit in one (less a MiB for the rest).
	MaxMessageBytes int
	// MaxDrivers and MaxDriversPerClient bound the drivers running at
	// once, on the host and from one client address.
	MaxDrivers, MaxDriversPerClient int
	// Done is closed when the host closes; ErrClosed is what a driver
	// waiting for a slot then gets.
	Done      <-chan struct{}
	ErrClosed error
	// SessionTTL is how long the host keeps a session unseen, for
	// KeepAlive's answer.
	SessionTTL time.Duration
	// MaxCBORStream bounds a "cbor" value GetStream converts to JSON (it
	// is converted whole); 0: MaxCBORStream.
	MaxCBORStream int64
	Log           *slog.Logger
}

// ErrConfig: the edge's Config is invalid.
var ErrConfig = errors.New("edge: invalid config")

// Edge implements the TaskService over a Host.
type Edge struct {
	h       Host
	cfg     Config
	drivers driverGate
}

var _ rayhostv1connect.TaskServiceHandler = (*Edge)(nil)

// New returns the edge of h.
func New(h Host, cfg Config) (*Edge, error) {
	switch {
	case h == nil:
		return nil, fmt.Errorf("%w: no host", ErrConfig)
	case cfg.MaxMessageBytes < 1<<20:
		return nil, fmt.Errorf("%w: MaxMessageBytes %d: want 1 MiB or more", ErrConfig, cfg.MaxMessageBytes)
	case cfg.MaxDrivers < 1 || cfg.MaxDriversPerClient < 1:
		return nil, fmt.Errorf("%w: MaxDrivers %d, MaxDriversPerClient %d: want 1 or more", ErrConfig, cfg.MaxDrivers, cfg.MaxDriversPerClient)
	case cfg.Done == nil || cfg.ErrClosed == nil:
		return nil, fmt.Errorf("%w: Done and ErrClosed are required", ErrConfig)
	case cfg.SessionTTL <= 0:
		return nil, fmt.Errorf("%w: SessionTTL %v: want > 0", ErrConfig, cfg.SessionTTL)
	case cfg.MaxCBORStream < 0:
		return nil, fmt.Errorf("%w: MaxCBORStream %d: want >= 0", ErrConfig, cfg.MaxCBORStream)
	}
	if cfg.MaxCBORStream == 0 {
		cfg.MaxCBORStream = MaxCBORStream
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Edge{h: h, cfg: cfg}, nil
}

// Handler returns the path and handler of e's TaskService with opts, and
// e's own interceptor (sessions.go), which every call passes first.
func (e *Edge) Handler(opts ...connect.HandlerOption) (string, http.Handler) {
	opts = append(slices.Clone(opts), connect.WithInterceptors(callerInterceptor{e}))
	return rayhostv1connect.NewTaskServiceHandler(e, opts...)
}

// compressMinBytes: messages below this travel uncompressed.
const compressMinBytes = 8 << 10

// HandlerOptions are the options of the host's Connect handlers (the
// TaskService and the peers' service): messages bounded by maxBytes (after
// decompression too), small ones uncompressed.
func HandlerOptions(maxBytes int) []connect.HandlerOption {
	return []connect.HandlerOption{
		connect.WithReadMaxBytes(maxBytes),
		connect.WithSendMaxBytes(maxBytes),
		// Compressing small messages costs more than it saves (the default
		// compresses everything; it was 4% of a host's CPU in benchmarks).
		connect.WithCompressMinBytes(compressMinBytes),
	}
}
