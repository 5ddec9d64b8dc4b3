package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/gossip"
	"github.com/rayhost/rayhost/host"
)

// defaultPort is the API port of a host when an address names none.
const defaultPort = 6380

// hostFlags binds the flags that configure a host (start, join, and run's
// embedded host) to a host.Config.
type hostFlags struct {
	cfg         host.Config
	resources   string
	logLevel    string
	memoryMiB   int64
	allowDirs   []string
	joinTimeout time.Duration
	// Limits (docs/SECURITY.md, "Limits").
	maxMemoryMiB, budgetMiB                int64
	storeQuota, storeReserve, objectMemory string
	// Cluster flags (start and join).
	serving         bool
	gossipAddr      string
	gossipAdvertise string
	joins           []string
	encrypt         string
	timings         string
}

// bindHostFlags binds a host's flags; serving adds those of a host others
// connect to (token, TLS, gossip), which an embedded host does not need.
func bindHostFlags(fs *pflag.FlagSet, dataDir, logLevel string, serving bool) *hostFlags {
	f := &hostFlags{cfg: host.DefaultConfig(dataDir)}
	fs.StringVar(&f.cfg.DataDir, "data-dir", dataDir, "directory for objects, modules and the compilation cache")
	if serving {
		fs.StringVar(&f.cfg.ListenAddr, "listen", f.cfg.ListenAddr, "address of the Connect API")
		fs.StringVar(&f.cfg.AdvertiseAddr, "advertise", "", "address others use to reach this host (default: the listen address)")
	}
	fs.StringVar(&f.cfg.ID, "id", "", "host name, unique in the cluster (default: made up once and kept in the data dir)")
	fs.Float64Var(&f.cfg.NumCPUs, "num-cpus", f.cfg.NumCPUs, "CPUs tasks may use")
	fs.Float64Var(&f.cfg.NumGPUs, "num-gpus", 0, "GPUs tasks may use")
	fs.StringVar(&f.resources, "resources", "", `custom resources as JSON, e.g. '{"disk": 2}'`)
	fs.IntVar(&f.cfg.Workers, "workers", -1, "warm worker processes (default: one per CPU)")
	fs.IntVar(&f.cfg.MaxWorkers, "max-workers", f.cfg.MaxWorkers, "most worker processes at once")
	fs.StringVar(&f.logLevel, "log-level", logLevel, "debug, info, warn or error")
	if serving {
		f.serving = true
		fs.StringVar(&f.gossipAddr, "gossip", "", "address for cluster gossip (Serf, TCP and UDP; default: the API's IP, port 7946)")
		fs.StringVar(&f.gossipAdvertise, "gossip-advertise", "", "gossip address others use to reach this host (default: --gossip)")
		fs.StringArrayVar(&f.joins, "join", nil, "gossip address of a cluster member to join (repeatable; retried until one answers)")
		fs.StringVar(&f.encrypt, "encrypt", "", "cluster `KEY` (make one with: rayhost keygen): encrypts and authenticates gossip, the same on every host; required unless gossip is on loopback")
		fs.StringVar(&f.timings, "gossip-timings", "lan", "failure detection timings: lan (a failed host is noticed in a few seconds) or fast (under a second; for tests on one machine)")
		fs.DurationVar(&f.joinTimeout, "join-timeout", time.Minute, "give up joining after this long")
		fs.StringVar(&f.cfg.Token, "token", "", "require this token on every API call")
		fs.StringVar(&f.cfg.TLSCertFile, "tls-cert", "", "serve HTTPS with this certificate (PEM)")
		fs.StringVar(&f.cfg.TLSKeyFile, "tls-key", "", "and this private key (PEM)")
		// Limits a stranger meets before authentication.
		fs.IntVar(&f.cfg.MaxConnections, "max-connections", f.cfg.MaxConnections, "most open API connections; more are closed at once")
		fs.DurationVar(&f.cfg.ReadHeaderTimeout, "read-header-timeout", f.cfg.ReadHeaderTimeout, "close a connection that takes longer to send a request's headers")
		fs.DurationVar(&f.cfg.BodyReadTimeout, "body-read-timeout", f.cfg.BodyReadTimeout, "fail a call whose one-message body takes longer to arrive (streams are exempt)")
		fs.DurationVar(&f.cfg.IdleTimeout, "idle-timeout", f.cfg.IdleTimeout, "close an API connection idle this long")
		fs.IntVar(&f.cfg.MaxHeaderBytes, "max-header-bytes", f.cfg.MaxHeaderBytes, "largest request headers")
		fs.IntVar(&f.cfg.MaxConcurrentStreams, "max-concurrent-streams", f.cfg.MaxConcurrentStreams, "most calls in flight on one HTTP/2 connection")
		fs.Float64Var(&f.cfg.RegisterRate, "register-rate", f.cfg.RegisterRate, "module registrations per second per client IP, on average")
		fs.IntVar(&f.cfg.RegisterBurst, "register-burst", f.cfg.RegisterBurst, "module registrations per client IP at once")
		// Client sessions: how long what API clients make is kept.
		fs.DurationVar(&f.cfg.SessionTTL, "session-ttl", f.cfg.SessionTTL, "end a client session not seen for this long, releasing its objects")
		fs.DurationVar(&f.cfg.AnonymousRefTTL, "anonymous-ref-ttl", f.cfg.AnonymousRefTTL, "release an object a call without a session made (curl) this long after")
		fs.IntVar(&f.cfg.MaxSessions, "max-sessions", f.cfg.MaxSessions, "most client sessions at once; more are refused")
		fs.IntVar(&f.cfg.MaxSessionsPerClient, "max-sessions-per-client", 0, "most sessions of one client (IP address) at once (0: a tenth of max-sessions)")
	}
	fs.StringArrayVar(&f.allowDirs, "allow-dir", nil, "a host directory calls may mount into guests (repeatable)")
	fs.BoolVar(&f.cfg.DisableWorkerConfinement, "no-worker-confinement", false, "start workers without their OS confinement (seccomp, Landlock, namespaces…), for debugging only")
	fs.DurationVar(&f.cfg.TaskTimeout, "task-timeout", 0, "default wall-clock limit of a task attempt (0: none)")
	fs.Int64Var(&f.memoryMiB, "task-memory-mib", f.cfg.TaskMemoryLimit>>20, "default guest memory limit in MiB")
	fs.Int64Var(&f.cfg.MaxLogBytes, "max-log-bytes", f.cfg.MaxLogBytes, "most output one task may print")
	fs.Int64Var(&f.cfg.MaxResultBytes, "max-result-bytes", f.cfg.MaxResultBytes, "largest result (or put) of one task")
	// Limits as caps: a call asking for more than a maximum is refused.
	fs.Int64Var(&f.maxMemoryMiB, "max-task-memory-mib", f.cfg.MaxTaskMemoryLimit>>20, "most guest memory a call may ask for, in MiB (at most 4096)")
	fs.DurationVar(&f.cfg.MaxTaskTimeout, "max-task-timeout", 0, "longest timeout a call may ask for; tasks without one get it (0: no cap)")
	fs.Int64Var(&f.budgetMiB, "guest-memory-budget-mib", 0, "most guest memory (sum of memory limits) of the tasks running at once, in MiB; more wait (0: no budget)")
	fs.IntVar(&f.cfg.MaxTaskDepth, "max-task-depth", f.cfg.MaxTaskDepth, "how deep tasks may nest")
	fs.IntVar(&f.cfg.MaxDrivers, "max-drivers", 0, "drivers (rayhost run) running at once; more wait (0: max-workers minus num-cpus)")
	fs.IntVar(&f.cfg.MaxDriversPerClient, "max-drivers-per-client", 0, "drivers of one client (IP address) running at once (0: half of max-drivers)")
	fs.IntVar(&f.cfg.MaxModules, "max-modules", f.cfg.MaxModules, "distinct modules the host keeps; more are refused (0: no limit)")
	fs.DurationVar(&f.cfg.CompileTimeout, "compile-timeout", f.cfg.CompileTimeout, "longest a module may take to compile (0: no limit)")
	fs.IntVar(&f.cfg.MaxModuleFunctions, "max-module-functions", f.cfg.MaxModuleFunctions, "most functions in a module, checked before compiling (0: no limit)")
	fs.IntVar(&f.cfg.MaxFunctionBodyBytes, "max-function-body-bytes", f.cfg.MaxFunctionBodyBytes, "largest function body in a module, checked before compiling (0: no limit)")
	fs.StringVar(&f.objectMemory, "object-memory", "1GiB", `most bytes of large objects (past 100 KiB) a host keeps in memory before it writes them to its store; one freed within --object-persist-after never reaches the disk (0: write each at once)`)
	fs.DurationVar(&f.cfg.LargeObjectPersistAfter, "object-persist-after", f.cfg.LargeObjectPersistAfter, "how long an object lives in memory before it is written to the store (sooner under memory pressure); one freed sooner never touches the disk, and one younger is lost if the host is killed (0: write each at once)")
	fs.StringVar(&f.storeQuota, "store-quota", "0", `most disk space the object store may use, e.g. "20GiB" or bytes (0: no quota)`)
	fs.StringVar(&f.storeReserve, "store-reserve", "0", `free space the object store leaves on its filesystem, e.g. "2GiB" (0: 5% of it, at most 1GiB, at least 128MiB)`)
	return f
}

// parseBytes reads a size: a number of bytes, or a number with a unit (B,
// KB, MB, GB, TB in powers of 1000; KiB, MiB, GiB, TiB in powers of 1024).
func parseBytes(flag, s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := 1.0
	for _, u := range units {
		if len(t) > len(u.suffix) && strings.EqualFold(t[len(t)-len(u.suffix):], u.suffix) {
			mult, t = u.mult, strings.TrimSpace(t[:len(t)-len(u.suffix)])
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || v*mult > 1<<62 {
		return 0, usagef("--%s %q: want a size such as 20GiB, 500MB or a number of bytes", flag, s)
	}
	return int64(v * mult), nil
}

// config finishes the Config once the flags are parsed.
func (f *hostFlags) config() (host.Config, error) {
	cfg := f.cfg
	if f.resources != "" {
		if err := json.Unmarshal([]byte(f.resources), &cfg.Resources); err != nil {
			return cfg, usagef("--resources: %v (want a JSON object such as '{\"disk\": 2}')", err)
		}
	}
	if cfg.Workers < 0 {
		cfg.Workers = max(int(cfg.NumCPUs), 1)
	}
	cfg.MaxWorkers = max(cfg.MaxWorkers, cfg.Workers)
	cfg.TaskMemoryLimit = f.memoryMiB << 20
	cfg.MaxTaskMemoryLimit = f.maxMemoryMiB << 20
	cfg.GuestMemoryBudget = f.budgetMiB << 20
	var err error
	if cfg.LargeObjectMemory, err = parseBytes("object-memory", f.objectMemory); err != nil {
		return cfg, err
	}
	if cfg.StoreQuota, err = parseBytes("store-quota", f.storeQuota); err != nil {
		return cfg, err
	}
	if cfg.StoreReserve, err = parseBytes("store-reserve", f.storeReserve); err != nil {
		return cfg, err
	}
	cfg.AllowedDirs = f.allowDirs
	var level slog.Level
	if err := level.UnmarshalText([]byte(strings.ToUpper(f.logLevel))); err != nil {
		return cfg, usagef("--log-level %q: want debug, info, warn or error", f.logLevel)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if f.serving {
		cc, err := f.cluster(cfg)
		if err != nil {
			return cfg, err
		}
		cfg.Cluster = cc
	}
	return cfg, nil
}

// cluster builds the cluster configuration from the gossip flags.
func (f *hostFlags) cluster(cfg host.Config) (*host.ClusterConfig, error) {
	cc := host.DefaultClusterConfig(f.joins...)
	cc.JoinTimeout = f.joinTimeout
	g := &cc.Gossip
	switch f.timings {
	case "lan":
		g.Timings = gossip.LANTimings()
	case "fast":
		g.Timings = gossip.FastTimings()
		cc.LoadInterval = 50 * time.Millisecond
	default:
		return nil, usagef("--gossip-timings %q: want lan or fast", f.timings)
	}
	g.BindAddr = f.gossipAddr
	if g.BindAddr == "" {
		ip, _, err := net.SplitHostPort(cfg.ListenAddr)
		if err != nil {
			return nil, usagef("--listen %q: %v (want HOST:PORT)", cfg.ListenAddr, err)
		}
		if ip == "" {
			ip = "0.0.0.0"
		}
		g.BindAddr = net.JoinHostPort(ip, "7946")
	}
	g.AdvertiseAddr = f.gossipAdvertise
	if f.encrypt != "" {
		key, err := gossip.ParseKey(f.encrypt)
		if err != nil {
			return nil, usagef("--encrypt: %w", err)
		}
		g.EncryptKey = key
	}
	return cc, nil
}

// clientFlags binds the flags of commands that talk to a host.
type clientFlags struct {
	address, token, tlsCA string
}

func bindClientFlags(fs *pflag.FlagSet, defaultAddress string) *clientFlags {
	f := &clientFlags{}
	fs.StringVarP(&f.address, "address", "a", defaultAddress, "host to talk to: HOST, HOST:PORT or a URL (port 6380 unless given)")
	fs.StringVar(&f.token, "token", "", "the cluster's API token")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "talk HTTPS, trusting this CA certificate (PEM)")
	return f
}

// normalizeAddress turns what a user types for --address into a base URL:
// "host" and "host:port" are plain HTTP (HTTPS with tlsCA), a URL keeps its
// scheme, and the port is 6380 unless given.
func normalizeAddress(addr string, tls bool) (string, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return "", usagef("--address is empty: give HOST, HOST:PORT or a URL such as http://127.0.0.1:6380")
	}
	scheme := "http"
	if tls {
		scheme = "https"
	}
	hostport := addr
	if i := strings.Index(addr, "://"); i >= 0 {
		u, err := url.Parse(addr)
		if err != nil {
			return "", usagef("--address %q: %v", addr, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return "", usagef("--address %q: the scheme must be http or https", addr)
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
			return "", usagef("--address %q: give only a scheme, host and port", addr)
		}
		if tls && u.Scheme == "http" {
			// --tls-ca asks for TLS: never send the token in clear text.
			return "", usagef("--address %q: --tls-ca is set but the address is http://; use https:// (or drop --tls-ca)", addr)
		}
		scheme, hostport = u.Scheme, u.Host
	}
	h, port, err := net.SplitHostPort(hostport)
	if strings.Count(hostport, "[") != strings.Count(hostport, "]") {
		return "", usagef("--address %q: unbalanced brackets", addr)
	}
	if err != nil {
		// No port: a name, an IPv4 address, or an IPv6 address with or
		// without brackets.
		h, port = strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]"), strconv.Itoa(defaultPort)
		if strings.ContainsAny(h, "[]") || (strings.Contains(h, ":") && net.ParseIP(h) == nil) {
			return "", usagef("--address %q: not HOST or HOST:PORT", addr)
		}
	}
	if h == "" {
		h = "127.0.0.1"
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return "", usagef("--address %q: the port must be a number from 1 to 65535", addr)
	}
	return scheme + "://" + net.JoinHostPort(h, port), nil
}

// client returns a client of the host the flags name.
func (f *clientFlags) client() (*client.Client, string, error) { return f.clientOf(f.address) }

// clientOf returns a client of the host at address, with the flags'
// token and TLS settings.
func (f *clientFlags) clientOf(address string) (*client.Client, string, error) {
	base, err := normalizeAddress(address, f.tlsCA != "")
	if err != nil {
		return nil, "", err
	}
	var opts []client.Option
	if f.token != "" {
		opts = append(opts, client.WithToken(f.token))
	}
	if f.tlsCA != "" {
		pem, err := os.ReadFile(f.tlsCA)
		if err != nil {
			return nil, "", fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, "", usagef("--tls-ca %s: no certificate found", f.tlsCA)
		}
		opts = append(opts, client.WithTLS(&tls.Config{RootCAs: pool}))
	} else if strings.HasPrefix(base, "https://") {
		opts = append(opts, client.WithTLS(&tls.Config{})) // the system's roots
	}
	return client.New(base, opts...), base, nil
}

// grantFlags binds --mount and --env: what a driver or a call is granted.
type grantFlags struct {
	mounts, env []string
}

func bindGrantFlags(fs *pflag.FlagSet) *grantFlags {
	g := &grantFlags{}
	fs.StringArrayVar(&g.mounts, "mount", nil, "grant a host directory: HOST_DIR:GUEST_DIR[:ro] (repeatable; within the host's --allow-dir)")
	fs.StringArrayVar(&g.env, "env", nil, "grant an environment variable: NAME=VALUE (repeatable)")
	return g
}

// parse returns the grants, or a usage error that shows the form.
func (g *grantFlags) parse() ([]client.Mount, map[string]string, error) {
	var mounts []client.Mount
	for _, m := range g.mounts {
		parts := strings.Split(m, ":")
		ro := len(parts) == 3 && parts[2] == "ro"
		if len(parts) == 3 && !ro && parts[2] != "rw" || len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return nil, nil, usagef("--mount %q: want HOST_DIR:GUEST_DIR, HOST_DIR:GUEST_DIR:ro or HOST_DIR:GUEST_DIR:rw", m)
		}
		host, err := filepath.Abs(parts[0])
		if err != nil {
			return nil, nil, usagef("--mount %q: %v", m, err)
		}
		mounts = append(mounts, client.Mount{HostPath: host, GuestPath: parts[1], ReadOnly: ro})
	}
	var env map[string]string
	for _, kv := range g.env {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			return nil, nil, usagef("--env %q: want NAME=VALUE", kv)
		}
		if env == nil {
			env = map[string]string{}
		}
		env[name] = value
	}
	return mounts, env, nil
}
