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
	"github.com/rayhost/rayhost/host/internal/cluster"
	"github.com/rayhost/rayhost/host/internal/edge"
	"github.com/rayhost/rayhost/host/internal/guard"
	"github.com/rayhost/rayhost/host/internal/launch"
	"github.com/rayhost/rayhost/host/internal/owner"
	"github.com/rayhost/rayhost/host/internal/peerwire"
	"github.com/rayhost/rayhost/internal/scheduler"
	"github.com/rayhost/rayhost/store"
)

// Host runs tasks: it owns the tasks submitted to it and their objects,
// schedules them on its resources, runs them in worker processes and serves
// the Connect API. It is the composition root of the packages under
// host/internal (docs/ARCHITECTURE.md draws them): the owner runs the
// tasks; the host opens the store, listens, puts the guard in front of the
// handlers and joins the cluster.
type Host struct {
	cfg      Config
	log      *slog.Logger
	st       store.Store
	ownStore bool
	// restarted: the data dir's store was there when the host started (it
	// served this host before).
	restarted bool
	own       *owner.Owner
	addr      string
	ln        net.Listener
	srv       *http.Server
	// Set when the host is in a cluster (Config.Cluster).
	cluster *cluster.Cluster

	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
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
	if _, err := scheduler.Make(cfg.NumCPUs, cfg.NumGPUs, cfg.Resources); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	h := &Host{cfg: cfg, log: cfg.Logger.With("host", cfg.ID)}
	launcher := cfg.Launcher
	if launcher == nil {
		launcher = &ProcessLauncher{Command: cfg.WorkerCommand, Logger: h.log}
	}
	h.st = cfg.Store
	if h.st == nil {
		bc := store.DefaultBadgerConfig(filepath.Join(cfg.DataDir, "objects"))
		_, err := os.Stat(bc.Dir)
		h.restarted = err == nil
		bc.Logger = h.log
		bc.Quota, bc.Reserve = cfg.StoreQuota, cfg.StoreReserve
		b, err := store.OpenBadger(bc)
		if err != nil {
			return nil, fmt.Errorf("host: object store: %w", err)
		}
		h.st, h.ownStore = b, true
	}
	var err error
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
	h.own, err = owner.New(h.ownerConfig(launcher))
	if err != nil {
		h.ln.Close()
		h.closeStore()
		return nil, err
	}
	api, err := h.own.Edge()
	if err != nil {
		h.own.Close()
		h.ln.Close()
		h.closeStore()
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}

	mux := http.NewServeMux()
	// The peer protocol version: calls to the PeerService with another
	// are refused; a peer's calls are answered with this host's. Credentials
	// are checked before the handlers, by the guard, so that no body is
	// read for a stranger.
	opts := append(edge.HandlerOptions(cfg.MaxMessageBytes), connect.WithInterceptors(peerwire.ServerInterceptor()))
	mux.Handle(api.Handler(opts...))
	mux.Handle(rayhostv1connect.NewPeerServiceHandler(h.own.PeerService(), opts...))
	mux.Handle(peerwire.PullBytesPath, h.own.PullBytes()) // raw, no Connect: guarded as the PeerService is
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	tls := cfg.TLSCertFile != ""
	if tls {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
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
		BaseContext: func(net.Listener) context.Context { return h.own.Serving() }}
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
	if cfg.Cluster != nil {
		if err := h.startCluster(); err != nil {
			_ = h.Close()
			return nil, err
		}
	}
	h.log.Info("host started", "address", h.addr, "cpus", cfg.NumCPUs, "workers", cfg.Workers)
	return h, nil
}

// ownerConfig is what the owner takes of the host's configuration.
func (h *Host) ownerConfig(l Launcher) owner.Config {
	c := &h.cfg
	return owner.Config{ID: c.ID, Addr: h.addr, DataDir: c.DataDir, CacheDir: c.CacheDir, Clustered: c.Cluster != nil,
		NumCPUs: c.NumCPUs, NumGPUs: c.NumGPUs, Resources: c.Resources,
		Workers: c.Workers, MaxWorkers: c.MaxWorkers, DisableWorkerConfinement: c.DisableWorkerConfinement,
		InlineObjectLimit: c.InlineObjectLimit, MemoryCacheBytes: c.MemoryCacheBytes, MaxMessageBytes: c.MaxMessageBytes,
		LargeObjectMemory: c.LargeObjectMemory, LargeObjectPersistAfter: c.LargeObjectPersistAfter,
		MaxModuleBytes: c.MaxModuleBytes, MaxTaskEvents: c.MaxTaskEvents,
		TaskMemoryLimit: c.TaskMemoryLimit, MaxTaskMemoryLimit: c.MaxTaskMemoryLimit, GuestMemoryBudget: c.GuestMemoryBudget,
		TaskTimeout: c.TaskTimeout, MaxTaskTimeout: c.MaxTaskTimeout,
		MaxArgBytes: c.MaxArgBytes, MaxResultBytes: c.MaxResultBytes, MaxLogBytes: c.MaxLogBytes,
		MaxTaskDepth: c.MaxTaskDepth, MaxTreeTasks: c.MaxTreeTasks, MaxDrivers: c.MaxDrivers, MaxDriversPerClient: c.MaxDriversPerClient,
		MaxModules: c.MaxModules, MaxModuleFunctions: c.MaxModuleFunctions, MaxFunctionBodyBytes: c.MaxFunctionBodyBytes,
		CompileTimeout: c.CompileTimeout, AllowedDirs: c.AllowedDirs,
		SessionTTL: c.SessionTTL, AnonymousRefTTL: c.AnonymousRefTTL, MaxSessions: c.MaxSessions, MaxSessionsPerClient: c.MaxSessionsPerClient,
		Store: h.st, Restarted: h.restarted, Launcher: l, Logger: h.log}
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
	if h.cluster == nil {
		return ""
	}
	return h.cluster.Local().GossipAddr
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
		h.own.Shutdown()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.srv.Shutdown(ctx)
		h.own.Close()
		h.wg.Wait()
		h.closeErr = h.closeStore()
	})
	return h.closeErr
}

func (h *Host) closeStore() error {
	if h.ownStore {
		return h.st.Close()
	}
	return nil
}

// leaveCluster leaves gracefully (others see the host left, not failed).
func (h *Host) leaveCluster() {
	if h.cluster == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.cluster.Leave(ctx); err != nil {
		h.log.Warn("leaving the cluster", "err", err)
	}
}
