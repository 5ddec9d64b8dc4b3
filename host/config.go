package host

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rayhost/rayhost/host/internal/objdir"
	"github.com/rayhost/rayhost/store"
)

// Config configures a Host. Build it with DefaultConfig and change what you
// need; New validates it and never changes it afterwards.
type Config struct {
	// DataDir holds the object store, the modules and the compilation cache.
	// Objects and modules survive a restart on the same DataDir.
	DataDir string
	// CacheDir holds wazero's compilation cache; "" is DataDir/cache. Hosts
	// may share one.
	CacheDir string
	// ListenAddr is where the Connect API listens ("127.0.0.1:0" picks a port).
	ListenAddr string
	// AdvertiseAddr is the address other parties use to reach this host;
	// "" uses the listener's address.
	AdvertiseAddr string
	// ID names the host in errors, logs, task events and the cluster; it
	// must be unique in the cluster. "" uses the one kept in DataDir (made
	// up the first time), so a restarted host keeps its name and rejoins.
	ID string

	// NumCPUs, NumGPUs and Resources are the host's total resources.
	NumCPUs   float64
	NumGPUs   float64
	Resources map[string]float64

	// Workers is how many worker processes start with the host and stay warm.
	// More start on demand (a task blocked in Get frees its CPU, and another
	// task needs a process), up to MaxWorkers.
	Workers    int
	MaxWorkers int
	// WorkerCommand starts a worker: the rayhost binary with "worker". The
	// host appends its own flags. Default: this executable + "worker".
	WorkerCommand []string
	// Launcher starts workers; nil uses processes started with WorkerCommand.
	Launcher Launcher
	// DisableWorkerConfinement starts worker processes without their OS
	// confinement (user and network namespaces, seccomp, Landlock,
	// no_new_privs, rlimits; see docs/SECURITY.md "Worker confinement"),
	// for debugging only, e.g. to strace a worker. Their environment stays
	// empty.
	DisableWorkerConfinement bool

	// InlineObjectLimit: values up to this size are kept in memory as well as
	// in the store, and travel inline (Ray's 100 KiB).
	InlineObjectLimit int
	// MemoryCacheBytes bounds the in-memory copies of small objects.
	MemoryCacheBytes int64
	// LargeObjectMemory bounds the bytes of larger objects held in memory
	// before they are written to the store: one is written once it has
	// lived LargeObjectPersistAfter, or sooner when they are past half of
	// this; one freed sooner never reaches the disk. 0 writes each at once.
	LargeObjectMemory int64
	// LargeObjectPersistAfter is how long an object, small or large, lives
	// in memory before it is written to the store (sooner under memory
	// pressure): one freed sooner costs the store nothing. 0 writes each
	// at once.
	LargeObjectPersistAfter time.Duration
	// MaxMessageBytes bounds one Connect message in either direction.
	MaxMessageBytes int
	// MaxModuleBytes bounds a registered module.
	MaxModuleBytes int
	// MaxTaskEvents bounds the task events kept (oldest dropped first).
	MaxTaskEvents int

	// Limits of each task, unless a call sets its own (memory, timeout).
	// TaskMemoryLimit is in bytes of guest memory; 0 is wazero's 4 GiB.
	TaskMemoryLimit int64
	// TaskTimeout bounds each attempt in wall-clock time; 0 is none.
	TaskTimeout time.Duration
	// MaxArgBytes bounds the inline arguments of one submission from a
	// guest; MaxResultBytes a task's result (and each object it puts or
	// yields); MaxLogBytes what a task may print. 0 is no limit.
	MaxArgBytes, MaxResultBytes, MaxLogBytes int64
	// MaxTaskDepth bounds how deep tasks may nest (a task submitted by a
	// task submitted by … the driver).
	MaxTaskDepth int
	// MaxTreeTasks bounds the unfinished tasks of one task tree (a client's
	// task or a driver, and everything it submits, transitively).
	MaxTreeTasks int

	// Caps and budgets (docs/SECURITY.md, "Limits"). A request above a
	// Max* fails with an error naming the flag that raises it.
	//
	// MaxTaskMemoryLimit caps the memory limit a call may ask for (bytes,
	// at most 4 GiB); MaxTaskTimeout the timeout (0: no cap; when set, a
	// task without a timeout gets it).
	MaxTaskMemoryLimit int64
	MaxTaskTimeout     time.Duration
	// GuestMemoryBudget bounds the sum of the memory limits of the tasks
	// running here at once (drivers, and live actors, included); a task
	// whose limit does not fit waits, in order, for running ones to end. It
	// must be 0 (no budget) or at least MaxTaskMemoryLimit.
	GuestMemoryBudget int64
	// StoreQuota bounds the disk space of the object store (0: none);
	// StoreReserve is the free space it leaves on its filesystem (0: 5% of
	// it, at most 1 GiB, at least store.MinReserve). Past either, writes
	// fail with resource_exhausted (store.ErrStoreFull); reads keep working.
	StoreQuota, StoreReserve int64
	// MaxDrivers bounds the drivers (Run) running at once on this host; the
	// others wait for one to finish. 0 is MaxWorkers - NumCPUs (at least 1),
	// so tasks always have a worker for each CPU.
	MaxDrivers int
	// MaxDriversPerClient bounds the drivers of one client (an IP address:
	// clients share the token) among them; 0 is half of MaxDrivers (at
	// least 1), so one client cannot take every slot.
	MaxDriversPerClient int
	// MaxModules bounds the distinct modules the host keeps (DefaultConfig:
	// 1000); registering another fails with resource_exhausted. 0 is no
	// limit.
	MaxModules int
	// CompileTimeout bounds compiling one module in a worker (the worker is
	// killed past it, and the module is refused). 0 is none.
	CompileTimeout time.Duration
	// MaxModuleFunctions and MaxFunctionBodyBytes bound a module's function
	// count and the size of one function body, checked before compiling.
	MaxModuleFunctions, MaxFunctionBodyBytes int

	// AllowedDirs are the host directories (and what is below them) that
	// calls may mount into guests with ray.MountDir. Empty: none.
	AllowedDirs []string

	// Client sessions (docs/ARCHITECTURE.md, "Object lifetime"): the refs
	// an API call makes are held by the caller's session until it releases
	// them or the session ends. Zero takes the default in parentheses;
	// negative is invalid.
	//
	// SessionTTL: a session with no call in flight that is not seen (no
	// call, no KeepAlive) for this long ends, and its refs are released
	// (5 min). The Go client keeps its session alive while it is open.
	SessionTTL time.Duration
	// AnonymousRefTTL: a ref made by a call without a session (curl) is
	// released this long after it was made (10 min).
	AnonymousRefTTL time.Duration
	// MaxSessions bounds the sessions of the host (10,000);
	// MaxSessionsPerClient those of one client (an IP address: clients
	// share the token) (a tenth of MaxSessions, at least 1). A call that
	// would make one more fails with resource_exhausted.
	MaxSessions, MaxSessionsPerClient int

	// Token, when set, is required on every API call as
	// "Authorization: Bearer <token>".
	Token string
	// TLSCertFile and TLSKeyFile, when set, make the API serve HTTPS (HTTP/1.1
	// and HTTP/2) instead of HTTP/1.1 + h2c.
	TLSCertFile, TLSKeyFile string

	// Limits on the API's connections and calls, applied before a call is
	// authenticated (a stranger can reach them). Zero takes the default in
	// parentheses; negative is invalid.
	//
	// ReadHeaderTimeout bounds reading a request's headers (10 s): a client
	// that sends them byte by byte is cut off. BodyReadTimeout bounds
	// reading the body of a call whose client sends one message (every call
	// but SubmitStream and Execute, whose bodies last as long as the call)
	// (2 min). IdleTimeout closes a connection without calls for this long
	// (2 min). MaxHeaderBytes bounds a request's headers (64 KiB).
	ReadHeaderTimeout, BodyReadTimeout, IdleTimeout time.Duration
	MaxHeaderBytes                                  int
	// MaxConnections caps the API's open connections (4096); one more is
	// closed as soon as it is accepted. A client (and a peer) needs one.
	MaxConnections int
	// MaxConcurrentStreams bounds the calls in flight on one HTTP/2
	// connection (1000); a client with more opens another connection.
	MaxConcurrentStreams int
	// RegisterRate and RegisterBurst limit RegisterModule per client IP
	// address: RegisterRate calls per second on average (2), RegisterBurst
	// at once (20). Calls past it fail with resource_exhausted.
	RegisterRate  float64
	RegisterBurst int
	// bodyRead, when set (tests), counts bytes read from request bodies.
	bodyRead *atomic.Int64

	// Cluster, when set, makes the host a member of a cluster (gossip,
	// placement across hosts, objects that move). Nil: a host on its own.
	Cluster *ClusterConfig

	// Store keeps objects; nil opens a Badger store in DataDir/objects.
	Store store.Store
	// Logger receives the host's logs; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns a configuration for a host on this machine, with
// its data under dataDir.
func DefaultConfig(dataDir string) Config {
	cpus := runtime.NumCPU()
	return Config{
		DataDir:           dataDir,
		ListenAddr:        "127.0.0.1:6380",
		NumCPUs:           float64(cpus),
		Workers:           cpus,
		MaxWorkers:        max(32, 4*cpus),
		InlineObjectLimit: 100 << 10,
		MemoryCacheBytes:  256 << 20,

		LargeObjectMemory:       objdir.DefaultLargeMemoryBytes,
		LargeObjectPersistAfter: objdir.DefaultPersistAfter,

		MaxMessageBytes: 256 << 20,
		MaxModuleBytes:  64 << 20,
		MaxTaskEvents:   100_000,
		TaskMemoryLimit: 1 << 30,
		MaxArgBytes:     64 << 20,
		MaxResultBytes:  256 << 20,
		MaxLogBytes:     16 << 20,
		MaxTaskDepth:    1000,
		MaxTreeTasks:    1_000_000,

		MaxTaskMemoryLimit:   4 << 30,
		MaxModules:           1000,
		CompileTimeout:       2 * time.Minute,
		MaxModuleFunctions:   100_000,
		MaxFunctionBodyBytes: 1 << 20,

		ReadHeaderTimeout:    defaultReadHeaderTimeout,
		BodyReadTimeout:      defaultBodyReadTimeout,
		IdleTimeout:          defaultIdleTimeout,
		MaxHeaderBytes:       defaultMaxHeaderBytes,
		MaxConnections:       defaultMaxConnections,
		MaxConcurrentStreams: defaultMaxConcurrentStreams,
		RegisterRate:         defaultRegisterRate,
		RegisterBurst:        defaultRegisterBurst,

		SessionTTL:      defaultSessionTTL,
		AnonymousRefTTL: defaultAnonymousRefTTL,
		MaxSessions:     defaultMaxSessions,
	}
}

// Errors of New.
var ErrInvalidConfig = errors.New("host: invalid config")

func (c *Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case c.DataDir == "":
		return bad("DataDir is required")
	case c.NumCPUs < 0 || c.NumGPUs < 0:
		return bad("resources must not be negative")
	case c.Workers < 0 || c.MaxWorkers < 1 || c.Workers > c.MaxWorkers:
		return bad("need 0 <= Workers <= MaxWorkers and MaxWorkers >= 1")
	case c.InlineObjectLimit < 0 || c.MaxMessageBytes < 1<<20 || c.MaxModuleBytes < 1<<20:
		return bad("InlineObjectLimit >= 0, MaxMessageBytes and MaxModuleBytes >= 1 MiB")
	case c.LargeObjectMemory < 0 || c.LargeObjectPersistAfter < 0:
		return bad("LargeObjectMemory and LargeObjectPersistAfter must be >= 0")
	case c.TaskMemoryLimit < 0 || c.TaskMemoryLimit > 4<<30 || c.TaskTimeout < 0:
		return bad("TaskMemoryLimit must be in 0..4 GiB and TaskTimeout >= 0")
	case c.MaxArgBytes < 0 || c.MaxResultBytes < 0 || c.MaxLogBytes < 0 || c.MaxTaskDepth < 1 || c.MaxTreeTasks < 1:
		return bad("size limits must be >= 0, MaxTaskDepth and MaxTreeTasks >= 1")
	case c.MaxTaskMemoryLimit < 0 || c.MaxTaskMemoryLimit > 4<<30 || c.MaxTaskTimeout < 0 || c.GuestMemoryBudget < 0:
		return bad("MaxTaskMemoryLimit must be in 0..4 GiB, MaxTaskTimeout and GuestMemoryBudget >= 0")
	case c.StoreQuota < 0 || c.StoreReserve < 0 || (c.StoreReserve > 0 && c.StoreReserve < store.MinReserve):
		return bad("StoreQuota must be >= 0, StoreReserve 0 or >= %d bytes (what Badger's own writes need)", store.MinReserve)
	case c.MaxDrivers < 0 || c.MaxDriversPerClient < 0 || c.MaxModules < 0 || c.CompileTimeout < 0 || c.MaxModuleFunctions < 0 || c.MaxFunctionBodyBytes < 0:
		return bad("MaxDrivers, MaxModules, CompileTimeout, MaxModuleFunctions and MaxFunctionBodyBytes must be >= 0")
	case (c.TLSCertFile == "") != (c.TLSKeyFile == ""):
		return bad("TLSCertFile and TLSKeyFile go together")
	}
	if err := c.validateNetLimits(); err != nil {
		return err
	}
	if err := c.validateSessions(); err != nil {
		return err
	}
	c.AllowedDirs = slices.Clone(c.AllowedDirs)
	for i, d := range c.AllowedDirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return bad("allowed dir %q: %v", d, err)
		}
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			abs = real
		}
		c.AllowedDirs[i] = abs
	}
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		return bad("ListenAddr %q: %v", c.ListenAddr, err)
	}
	for name, v := range c.Resources {
		if name == "" || name == "CPU" || name == "GPU" || v < 0 {
			return bad("resource %q = %v", name, v)
		}
	}
	if c.Launcher == nil && len(c.WorkerCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return bad("no WorkerCommand and no executable path: %v", err)
		}
		c.WorkerCommand = []string{exe, "worker"}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ID == "" {
		id, err := persistentID(c.DataDir)
		if err != nil {
			return bad("host id: %v", err)
		}
		c.ID = id
	}
	if c.Cluster != nil {
		cc := *c.Cluster
		if cc.JoinTimeout <= 0 {
			cc.JoinTimeout = time.Minute
		}
		if cc.LoadInterval <= 0 {
			cc.LoadInterval = 200 * time.Millisecond
		}
		if cc.Gossip.SnapshotPath == "" {
			cc.Gossip.SnapshotPath = filepath.Join(c.DataDir, "serf.snapshot")
		}
		c.Cluster = &cc
	}
	if c.MaxTaskMemoryLimit == 0 {
		c.MaxTaskMemoryLimit = 4 << 30
	}
	if c.TaskMemoryLimit > c.MaxTaskMemoryLimit {
		return bad("TaskMemoryLimit %d MiB is above MaxTaskMemoryLimit %d MiB (--task-memory-mib > --max-task-memory-mib)", c.TaskMemoryLimit>>20, c.MaxTaskMemoryLimit>>20)
	}
	if c.MaxTaskTimeout > 0 && c.TaskTimeout > c.MaxTaskTimeout {
		return bad("TaskTimeout %v is above MaxTaskTimeout %v (--task-timeout > --max-task-timeout)", c.TaskTimeout, c.MaxTaskTimeout)
	}
	if c.GuestMemoryBudget > 0 && c.GuestMemoryBudget < c.MaxTaskMemoryLimit {
		return bad("GuestMemoryBudget %d MiB is below MaxTaskMemoryLimit %d MiB: a task at the maximum could never run (--guest-memory-budget-mib < --max-task-memory-mib)", c.GuestMemoryBudget>>20, c.MaxTaskMemoryLimit>>20)
	}
	if c.MaxDrivers == 0 {
		c.MaxDrivers = max(c.MaxWorkers-int(c.NumCPUs), 1)
	}
	if c.MaxDriversPerClient == 0 {
		c.MaxDriversPerClient = max(c.MaxDrivers/2, 1)
	}
	c.Resources = maps.Clone(c.Resources)
	c.DataDir = filepath.Clean(c.DataDir)
	if c.CacheDir == "" {
		c.CacheDir = filepath.Join(c.DataDir, "cache")
	}
	return nil
}

// Defaults of the API's limits (see Config.ReadHeaderTimeout).
const (
	defaultReadHeaderTimeout    = 10 * time.Second
	defaultBodyReadTimeout      = 2 * time.Minute
	defaultIdleTimeout          = 2 * time.Minute
	defaultMaxHeaderBytes       = 64 << 10
	defaultMaxConnections       = 4096
	defaultMaxConcurrentStreams = 1000
	defaultRegisterRate         = 2
	defaultRegisterBurst        = 20
)

// validateNetLimits fills in the API limits left zero and refuses
// negative ones.
func (c *Config) validateNetLimits() error {
	if c.ReadHeaderTimeout < 0 || c.BodyReadTimeout < 0 || c.IdleTimeout < 0 || c.MaxHeaderBytes < 0 ||
		c.MaxConnections < 0 || c.MaxConcurrentStreams < 0 || c.RegisterRate < 0 || c.RegisterBurst < 0 ||
		math.IsNaN(c.RegisterRate) || math.IsInf(c.RegisterRate, 0) {
		return fmt.Errorf("%w: the API's timeouts and limits must not be negative (0 takes the default)", ErrInvalidConfig)
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.ReadHeaderTimeout, defaultReadHeaderTimeout)
	def(&c.BodyReadTimeout, defaultBodyReadTimeout)
	def(&c.IdleTimeout, defaultIdleTimeout)
	defInt(&c.MaxHeaderBytes, defaultMaxHeaderBytes)
	defInt(&c.MaxConnections, defaultMaxConnections)
	defInt(&c.MaxConcurrentStreams, defaultMaxConcurrentStreams)
	defInt(&c.RegisterBurst, defaultRegisterBurst)
	if c.RegisterRate == 0 {
		c.RegisterRate = defaultRegisterRate
	}
	return nil
}

// Defaults of client sessions (see Config.SessionTTL).
const (
	defaultSessionTTL      = 5 * time.Minute
	defaultAnonymousRefTTL = 10 * time.Minute
	defaultMaxSessions     = 10_000
)

// validateSessions fills in the session settings left zero and refuses
// negative ones.
func (c *Config) validateSessions() error {
	switch {
	case c.SessionTTL < 0 || c.AnonymousRefTTL < 0 || c.MaxSessions < 0 || c.MaxSessionsPerClient < 0:
		return fmt.Errorf("%w: SessionTTL, AnonymousRefTTL, MaxSessions and MaxSessionsPerClient must not be negative (0 takes the default)", ErrInvalidConfig)
	case c.MaxSessions > 0 && c.MaxSessionsPerClient > c.MaxSessions:
		return fmt.Errorf("%w: MaxSessionsPerClient %d is above MaxSessions %d (--max-sessions-per-client > --max-sessions)", ErrInvalidConfig, c.MaxSessionsPerClient, c.MaxSessions)
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = defaultSessionTTL
	}
	if c.AnonymousRefTTL == 0 {
		c.AnonymousRefTTL = defaultAnonymousRefTTL
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = max(defaultMaxSessions, c.MaxSessionsPerClient)
	}
	if c.MaxSessionsPerClient == 0 {
		c.MaxSessionsPerClient = max(c.MaxSessions/10, 1)
	}
	return nil
}

// persistentID returns the host name kept in dataDir, making one up (the
// machine's name and a random suffix) the first time.
func persistentID(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "host-id")
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return "", err
	}
	name, _ := os.Hostname()
	var suffix [3]byte
	_, _ = rand.Read(suffix[:])
	id := fmt.Sprintf("%s-%x", name, suffix)
	return id, os.WriteFile(path, []byte(id+"\n"), 0o644)
}

// memoryPages is the default guest memory limit in 64 KiB pages.
func (c *Config) memoryPages() uint32 { return uint32((c.TaskMemoryLimit + 65535) / 65536) }
