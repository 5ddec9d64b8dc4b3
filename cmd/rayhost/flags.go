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
	}
	fs.StringArrayVar(&f.allowDirs, "allow-dir", nil, "a host directory calls may mount into guests (repeatable)")
	fs.DurationVar(&f.cfg.TaskTimeout, "task-timeout", 0, "default wall-clock limit of a task attempt (0: none)")
	fs.Int64Var(&f.memoryMiB, "task-memory-mib", f.cfg.TaskMemoryLimit>>20, "default guest memory limit in MiB")
	fs.Int64Var(&f.cfg.MaxLogBytes, "max-log-bytes", f.cfg.MaxLogBytes, "most output one task may print")
	fs.Int64Var(&f.cfg.MaxResultBytes, "max-result-bytes", f.cfg.MaxResultBytes, "largest result (or put) of one task")
	return f
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
func (f *clientFlags) client() (*client.Client, string, error) {
	base, err := normalizeAddress(f.address, f.tlsCA != "")
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
