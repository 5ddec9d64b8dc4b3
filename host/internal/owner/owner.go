// Package owner is the host's owner role: the tasks submitted to the host
// and the objects they return. It keeps the task table and drives each
// task's state machine (host/internal/lifecycle), dispatches tasks to
// workers or to other hosts, runs actors, keeps lineage to rebuild lost
// objects, serves the ops running guests call, and runs tasks other hosts
// own (the executor side of the peer protocol).
//
// Package host is the composition root around it: it opens the store,
// listens, puts the guard in front of the handlers this package provides
// (Edge, PeerService), and joins the cluster (AttachCluster).
//
// The worker processes are a host/internal/workerpool Pool: it starts,
// keeps idle, reaps and replaces them; the owner is its Handler
// (workerRole) and keeps what each worker runs (workerProc, the
// pool worker's Value).
//
// Locking: Owner.mu guards the task table, the dispatcher's queues, what
// the workers run, actors and lineage. The worker pool, the object
// directory (host/internal/objdir), the module registry
// (host/internal/modules), the cluster view (host/internal/cluster) and
// the task event log each have their own lock, taken after Owner.mu when
// both are held; none calls back into the owner with its lock held (the
// pool's Handler calls take Owner.mu themselves).
package owner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/rayhost/rayhost/host/internal/cluster"
	"github.com/rayhost/rayhost/host/internal/launch"
	"github.com/rayhost/rayhost/host/internal/modules"
	"github.com/rayhost/rayhost/host/internal/objdir"
	"github.com/rayhost/rayhost/host/internal/workerpool"
	"github.com/rayhost/rayhost/internal/clock"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/scheduler"
	"github.com/rayhost/rayhost/store"
)

// Config is what the owner needs of the host's configuration (host.Config
// documents each field), and the parts it runs on. Package host fills it
// in from a validated host.Config.
type Config struct {
	ID       string // the host's name
	Addr     string // the host's advertised API address
	DataDir  string
	CacheDir string
	// Clustered: the host is a member of a cluster (AttachCluster follows).
	Clustered bool

	NumCPUs, NumGPUs float64
	Resources        map[string]float64

	Workers, MaxWorkers      int
	DisableWorkerConfinement bool

	InlineObjectLimit int
	MemoryCacheBytes  int64
	// LargeObjectMemory, LargeObjectPersistAfter: objdir's memory tier
	// (Config.LargeMemoryBytes, Config.PersistAfter).
	LargeObjectMemory       int64
	LargeObjectPersistAfter time.Duration
	MaxMessageBytes         int
	MaxModuleBytes          int
	MaxTaskEvents           int

	TaskMemoryLimit, MaxTaskMemoryLimit, GuestMemoryBudget int64
	TaskTimeout, MaxTaskTimeout                            time.Duration
	MaxArgBytes, MaxResultBytes, MaxLogBytes               int64
	MaxTaskDepth, MaxTreeTasks                             int
	MaxDrivers, MaxDriversPerClient                        int
	MaxModules, MaxModuleFunctions, MaxFunctionBodyBytes   int
	CompileTimeout                                         time.Duration
	AllowedDirs                                            []string
	// The API's client sessions (sessions.go): how long one lives unseen,
	// how long a ref made without one is held, how many there may be.
	SessionTTL, AnonymousRefTTL       time.Duration
	MaxSessions, MaxSessionsPerClient int

	Store store.Store
	// Restarted: Store served this host before it started (its data dir
	// was there); objects of its own it has no record of died with its
	// earlier life (objdir.Config.Restarted).
	Restarted bool
	Launcher  launch.Launcher
	Logger    *slog.Logger
	// Clock times task attempts (Limits.Timeout) and task events; nil is
	// the system clock.
	Clock clock.Clock
	// WorkerClock times the worker pool: worker starts and stops, and
	// reaping idle workers (host/internal/workerpool Config.Clock); nil is
	// the system clock. It is not Clock: a test that drives attempt
	// timeouts on a Fake clock must not drive (nor wait for) the pool's
	// timers with them, and a Fake clock would never kill a worker that
	// does not stop.
	WorkerClock clock.Clock
	// SessionClock times the API's client sessions and anonymous holds
	// (sessions.go); nil is Clock. It is not Clock in the owner's tests:
	// those that drive attempt timeouts count and wait for the timers
	// armed on it.
	SessionClock clock.Clock
}

// ErrInvalidConfig: New was given a Config it cannot run with.
var ErrInvalidConfig = errors.New("owner: invalid configuration")

func (c *Config) validate() error {
	switch {
	case c.ID == "" || c.Addr == "":
		return fmt.Errorf("%w: ID and Addr are required", ErrInvalidConfig)
	case c.Store == nil || c.Launcher == nil || c.Logger == nil:
		return fmt.Errorf("%w: Store, Launcher and Logger are required", ErrInvalidConfig)
	case c.Workers < 0 || c.MaxWorkers < 1 || c.Workers > c.MaxWorkers:
		return fmt.Errorf("%w: Workers %d, MaxWorkers %d", ErrInvalidConfig, c.Workers, c.MaxWorkers)
	case c.SessionTTL <= 0 || c.AnonymousRefTTL <= 0 || c.MaxSessions < 1 || c.MaxSessionsPerClient < 1:
		return fmt.Errorf("%w: SessionTTL %v and AnonymousRefTTL %v must be > 0, MaxSessions %d and MaxSessionsPerClient %d >= 1",
			ErrInvalidConfig, c.SessionTTL, c.AnonymousRefTTL, c.MaxSessions, c.MaxSessionsPerClient)
	}
	return nil
}

// memoryPages is TaskMemoryLimit in Wasm pages.
func (c *Config) memoryPages() uint32 { return uint32((c.TaskMemoryLimit + 65535) / 65536) }

// Owner runs the tasks submitted to one host.
type Owner struct {
	cfg      Config
	log      *slog.Logger
	st       store.Store
	objs     *objdir.Dir
	mods     *modules.Registry
	policy   *modules.Policy
	events   *events
	launcher launch.Launcher
	conf     launch.Confinement
	cacheDir string
	addr     string
	clock    clock.Clock
	// pool is the worker processes; its lock comes after mu.
	pool *workerpool.Pool

	mu         sync.Mutex
	sched      *scheduler.Scheduler[ids.TaskID, *task]
	tasks      map[ids.TaskID]*task
	needWorker []*task
	starved    []*task // waiting for a worker that cannot come; failed by start
	actors     map[ids.TaskID]*actor
	actorNames map[string]ids.TaskID // namespace/name
	lineage    map[ids.TaskID]*task  // finished tasks whose results other hosts hold
	runTimes   runTimes              // functions' recent run times (pipeline.go)
	closed     bool

	// The roles (roles.go).
	disp *dispatcher
	wrk  *workerRole
	gops *guestOps
	acts *actorTable
	fgn  *executor
	rem  *remoteRole
	adm  *admission
	lin  *lineageRole
	refs *refsRole
	sess *sessionRole
	brw  *borrowRole

	// Set by AttachCluster when the host is in a cluster.
	cluster *cluster.Cluster

	done chan struct{} // closed by Shutdown
	// serving is the base context of API calls; Shutdown cancels it (its
	// cause ErrClosed) so that long calls (a peer's Execute stream, a
	// Locate wait, a client's Get) end, and say why.
	serving     context.Context
	stopServing context.CancelCauseFunc
	wg          sync.WaitGroup
}

// New makes the owner of a host and starts its warm workers.
func New(cfg Config) (*Owner, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	total, err := scheduler.Make(cfg.NumCPUs, cfg.NumGPUs, cfg.Resources)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	h := &Owner{
		cfg: cfg, log: cfg.Logger, st: cfg.Store, launcher: cfg.Launcher, addr: cfg.Addr, cacheDir: cfg.CacheDir,
		sched: scheduler.New[ids.TaskID, *task](total), tasks: map[ids.TaskID]*task{},
		actors: map[ids.TaskID]*actor{}, actorNames: map[string]ids.TaskID{}, lineage: map[ids.TaskID]*task{},
		done: make(chan struct{}),
	}
	if h.clock = cfg.Clock; h.clock == nil {
		h.clock = clock.Real{}
	}
	if err := h.roles(); err != nil {
		return nil, err
	}
	h.serving, h.stopServing = context.WithCancelCause(context.Background())
	h.sched.SetLocalName(cfg.ID)
	if err := os.MkdirAll(h.cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("host: data dir: %w", err)
	}
	if err := h.adm.newModules(); err != nil {
		return nil, err
	}
	if h.objs, err = h.newObjects(); err != nil {
		return nil, fmt.Errorf("host: %w", err)
	}
	h.events = newEvents(cfg.MaxTaskEvents)
	if h.pool, err = h.wrk.newPool(); err != nil {
		h.objs.Close()
		return nil, err
	}

	// The warm pool plus one spare: a driver (which holds no CPU) or a task
	// blocked in Get takes a process without making the next task wait for
	// a cold one. The pool's reaper stops the spares that stay idle.
	for range min(cfg.Workers+1, cfg.MaxWorkers) {
		_ = h.pool.Start()
	}
	return h, nil
}

// Serving is the base context of the host's API calls: it ends with
// Shutdown, its cause ErrClosed.
func (h *Owner) Serving() context.Context { return h.serving }

// AttachCluster makes the owner place tasks on the members c knows and
// reach them through c. Call it before c.Start.
func (h *Owner) AttachCluster(c *cluster.Cluster) { h.cluster = c }

// Placement is what c tells the owner about members (cluster.Placement).
func (h *Owner) Placement() cluster.Placement { return hostPlacement{h} }

// Shutdown refuses new work and ends the API's long calls; Close follows.
func (h *Owner) Shutdown() {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
	h.mu.Unlock()
	h.sess.close()
	h.stopServing(ErrClosed)
}

// Close stops the workers (running tasks fail), closes the cluster view
// and waits for the owner's goroutines; the object directory is closed
// last, once every object is written.
func (h *Owner) Close() {
	h.Shutdown()
	// Without Owner.mu: the pool's Handler calls, which Close waits for,
	// take it.
	_ = h.pool.Close(context.Background())
	if h.cluster != nil {
		// Closes the membership and ends remote attempts and calls to
		// peers.
		_ = h.cluster.Close()
	}
	h.wg.Wait()
	h.objs.Close()
}
