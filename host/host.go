package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/gossip"
	"github.com/rayhost/rayhost/host/internal/cluster"
	"github.com/rayhost/rayhost/host/internal/guard"
	"github.com/rayhost/rayhost/host/internal/launch"
	"github.com/rayhost/rayhost/host/internal/modules"
	"github.com/rayhost/rayhost/host/internal/objdir"
	"github.com/rayhost/rayhost/host/internal/peerwire"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/scheduler"
	"github.com/rayhost/rayhost/store"
)

// Host runs tasks: it owns the tasks submitted to it and their objects,
// schedules them on its resources, runs them in worker processes and serves
// the Connect API.
type Host struct {
	cfg      Config
	log      *slog.Logger
	st       store.Store
	ownStore bool
	objs     *objdir.Dir
	mods     *modules.Registry
	policy   *modules.Policy
	events   *events
	launcher Launcher
	conf     launch.Confinement
	cacheDir string
	addr     string
	ln       net.Listener
	srv      *http.Server
	started  time.Time

	mu         sync.Mutex
	sched      *scheduler.Scheduler[ids.TaskID, *task]
	tasks      map[ids.TaskID]*task
	workers    map[*workerProc]struct{}
	idle       []*workerProc
	starting   int
	needWorker []*task
	starved    []*task // waiting for a worker that cannot come; failed by start
	actors     map[ids.TaskID]*actor
	actorNames map[string]ids.TaskID // namespace/name
	lineage    map[ids.TaskID]*task  // finished tasks whose results other hosts hold
	closed     bool

	// Set when the host is in a cluster (Config.Cluster).
	members gossip.Membership
	cluster *cluster.Cluster

	done chan struct{} // closed by Close
	// serving is the base context of API calls; Close cancels it so that
	// long calls (a peer's Execute stream, a Locate wait) end.
	serving     context.Context
	stopServing context.CancelFunc
	wg          sync.WaitGroup
	closeOnce   sync.Once
	closeErr    error
}

// New starts a host: it opens the store, starts the warm workers and listens
// on cfg.ListenAddr. Close stops it.
func New(cfg Config) (*Host, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Launcher == nil {
		if err := launch.Supported(); err != nil {
			return nil, err
		}
	}
	total, err := scheduler.Make(cfg.NumCPUs, cfg.NumGPUs, cfg.Resources)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	h := &Host{
		cfg: cfg, log: cfg.Logger.With("host", cfg.ID), started: time.Now(),
		sched: scheduler.New[ids.TaskID, *task](total), tasks: map[ids.TaskID]*task{},
		actors: map[ids.TaskID]*actor{}, actorNames: map[string]ids.TaskID{}, lineage: map[ids.TaskID]*task{},
		workers: map[*workerProc]struct{}{}, cacheDir: cfg.CacheDir, done: make(chan struct{}),
	}
	h.sched.SetLocalName(cfg.ID)
	api, err := h.newEdge()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	if err := os.MkdirAll(h.cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("host: data dir: %w", err)
	}
	if err := h.newModules(); err != nil {
		return nil, err
	}
	h.launcher = cfg.Launcher
	if h.launcher == nil {
		h.launcher = &ProcessLauncher{Command: cfg.WorkerCommand, Logger: h.log}
	}
	h.st = cfg.Store
	if h.st == nil {
		bc := store.DefaultBadgerConfig(filepath.Join(cfg.DataDir, "objects"))
		bc.Logger = h.log
		bc.Quota, bc.Reserve = cfg.StoreQuota, cfg.StoreReserve
		b, err := store.OpenBadger(bc)
		if err != nil {
			return nil, fmt.Errorf("host: object store: %w", err)
		}
		h.st, h.ownStore = b, true
	}
	h.ln, err = net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		h.closeStore()
		return nil, fmt.Errorf("host: listen: %w", err)
	}
	h.ln = guard.CapListener(h.ln, cfg.MaxConnections, func(n int64) {
		h.log.Warn("the API has MaxConnections open: closing new ones (--max-connections)", "max", cfg.MaxConnections, "refused", n)
	})
	h.addr = cfg.AdvertiseAddr
	if h.addr == "" {
		h.addr = h.ln.Addr().String()
		if tcp, ok := h.ln.Addr().(*net.TCPAddr); ok && tcp.IP.IsUnspecified() && cfg.Cluster != nil {
			// Listening on every interface: peers need one address that
			// reaches this machine, not [::].
			h.addr = net.JoinHostPort(outboundIP(), strconv.Itoa(tcp.Port))
			// A guess (the first private address may be a bridge or a VPN):
			// say which, so a wrong one is easy to spot.
			h.log.Warn("listening on every interface: advertising a guessed address to the other hosts; set AdvertiseAddr (--advertise) if they cannot reach it", "advertise", h.addr)
		}
	}
	front, err := newGuard(&h.cfg, h.addr)
	if err != nil {
		h.ln.Close()
		h.closeStore()
		return nil, err
	}
	if h.objs, err = h.newObjects(); err != nil {
		h.ln.Close()
		h.closeStore()
		return nil, fmt.Errorf("host: %w", err)
	}
	h.events = newEvents(cfg.MaxTaskEvents)

	// The warm pool plus one spare: a driver (which holds no CPU) or a task
	// blocked in Get takes a process without making the next task wait for
	// a cold one.
	h.mu.Lock()
	for range min(cfg.Workers+1, cfg.MaxWorkers) {
		h.startWorkerLocked()
	}
	h.mu.Unlock()

	mux := http.NewServeMux()
	// The peer protocol version: calls to the PeerService with another
	// are refused; a peer's calls are answered with this host's.
	peerVersion := connect.WithInterceptors(peerwire.ServerInterceptor())
	mux.Handle(rayhostv1connect.NewTaskServiceHandler(api, append(h.handlerOptions(), peerVersion)...))
	mux.Handle(rayhostv1connect.NewPeerServiceHandler(&peerAPI{h: h}, append(h.handlerOptions(), peerVersion)...))
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	tls := cfg.TLSCertFile != ""
	if tls {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	h.serving, h.stopServing = context.WithCancel(context.Background())
	// Pings find a peer or client that vanished without closing its
	// connection, so the streams it had end.
	// Limits a stranger meets before a call is authenticated: header and
	// body read deadlines, idle connections closed, a connection cap (the
	// listener), and the guard, which checks credentials before any body
	// is read.
	h.srv = &http.Server{Handler: front.Wrap(mux), Protocols: protocols,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout, IdleTimeout: cfg.IdleTimeout, MaxHeaderBytes: cfg.MaxHeaderBytes,
		HTTP2: &http.HTTP2Config{SendPingTimeout: 10 * time.Second, PingTimeout: 5 * time.Second,
			MaxConcurrentStreams: cfg.MaxConcurrentStreams, MaxReadFrameSize: 1 << 20},
		BaseContext: func(net.Listener) context.Context { return h.serving }}
	if guard.Exposed(h.ln.Addr()) && cfg.Token == "" {
		h.log.Warn("the API listens beyond loopback without a token: anyone who can reach it can run code here; set a token (--token or RAYHOST_TOKEN) and TLS", "address", h.ln.Addr().String())
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		var err error
		if tls {
			err = h.srv.ServeTLS(h.ln, cfg.TLSCertFile, cfg.TLSKeyFile)
		} else {
			err = h.srv.Serve(h.ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("serving the API", "err", err)
		}
	}()
	h.wg.Add(1)
	go h.housekeeping()
	if cfg.Cluster != nil {
		if err := h.startCluster(); err != nil {
			_ = h.Close()
			return nil, err
		}
	}
	h.log.Info("host started", "address", h.addr, "cpus", cfg.NumCPUs, "workers", cfg.Workers)
	return h, nil
}

// outboundIP is the first private (else any non-loopback) IPv4 address of
// this machine, or 127.0.0.1.
func outboundIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "127.0.0.1"
	}
	var fallback string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLoopback() || ipn.IP.To4() == nil {
			continue
		}
		if ipn.IP.IsPrivate() {
			return ipn.IP.String()
		}
		if fallback == "" {
			fallback = ipn.IP.String()
		}
	}
	if fallback != "" {
		return fallback
	}
	return "127.0.0.1"
}

// Addr is the address of the host's Connect API.
func (h *Host) Addr() string { return h.addr }

// URL is the base URL of the host's Connect API.
func (h *Host) URL() string {
	if h.cfg.TLSCertFile != "" {
		return "https://" + h.addr
	}
	return "http://" + h.addr
}

// GossipAddr is the host's gossip address ("" outside a cluster).
func (h *Host) GossipAddr() string {
	if h.members == nil {
		return ""
	}
	return h.members.Local().GossipAddr
}

// ID is the host's name.
func (h *Host) ID() string { return h.cfg.ID }

// Close stops serving, stops the workers (running tasks fail) and closes
// the store once every object is written.
func (h *Host) Close() error {
	h.closeOnce.Do(func() {
		// Leave first: peers stop placing work here and see a host that
		// left, not one that failed.
		h.leaveCluster()
		h.mu.Lock()
		h.closed = true
		close(h.done)
		ws := make([]*workerProc, 0, len(h.workers))
		for w := range h.workers {
			ws = append(ws, w)
		}
		h.mu.Unlock()
		h.stopServing()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.srv.Shutdown(ctx)
		var stopping sync.WaitGroup
		for _, w := range ws {
			stopping.Go(w.stop)
		}
		stopping.Wait()
		if h.cluster != nil {
			// Closes the membership and ends remote attempts and calls to
			// peers.
			_ = h.cluster.Close()
		} else if h.members != nil {
			_ = h.members.Close()
		}
		h.wg.Wait()
		h.objs.Close()
		h.closeErr = h.closeStore()
	})
	return h.closeErr
}

// housekeeping runs periodic chores until Close.
func (h *Host) housekeeping() {
	defer h.wg.Done()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case now := <-tick.C:
			h.reapIdleWorkers(now)
		case <-h.done:
			return
		}
	}
}

func (h *Host) closeStore() error {
	if h.ownStore {
		return h.st.Close()
	}
	return nil
}
