package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/gossip"
	"github.com/rayhost/rayhost/host"
)

// hostFlags binds the flags that configure a host (start, and run's
// embedded host) to a host.Config.
type hostFlags struct {
	cfg         host.Config
	resources   string
	logLevel    string
	memoryMiB   int64
	allowDirs   stringList
	joinTimeout time.Duration
	// Cluster flags (start and join).
	serving         bool
	gossipAddr      string
	gossipAdvertise string
	joins           stringList
	encrypt         string
	timings         string
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// bindHostFlags binds a host's flags; serving adds those of a host others
// connect to (token, TLS), which an embedded host does not need.
func bindHostFlags(fs *flag.FlagSet, dataDir, logLevel string, serving bool) *hostFlags {
	f := &hostFlags{cfg: host.DefaultConfig(dataDir)}
	fs.StringVar(&f.cfg.DataDir, "data-dir", dataDir, "directory for objects, modules and the compilation cache")
	fs.StringVar(&f.cfg.ListenAddr, "listen", f.cfg.ListenAddr, "address of the Connect API")
	fs.StringVar(&f.cfg.AdvertiseAddr, "advertise", "", "address others use to reach this host (default: the listen address)")
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
		fs.Var(&f.joins, "join", "gossip address of a cluster member to join (repeatable; retried until one answers)")
		fs.StringVar(&f.encrypt, "encrypt", os.Getenv("RAYHOST_ENCRYPT"), "encrypt gossip with this key: base64 of 16, 24 or 32 bytes, the same on every host (default $RAYHOST_ENCRYPT)")
		fs.StringVar(&f.timings, "gossip-timings", "lan", "failure detection timings: lan (a failed host is noticed in a few seconds) or fast (under a second; for tests on one machine)")
		fs.DurationVar(&f.joinTimeout, "join-timeout", time.Minute, "give up joining after this long")
		fs.StringVar(&f.cfg.Token, "token", os.Getenv("RAYHOST_TOKEN"), "require this token on every API call (default $RAYHOST_TOKEN)")
		fs.StringVar(&f.cfg.TLSCertFile, "tls-cert", "", "serve HTTPS with this certificate (PEM)")
		fs.StringVar(&f.cfg.TLSKeyFile, "tls-key", "", "and this private key (PEM)")
	}
	fs.Var(&f.allowDirs, "allow-dir", "a host directory calls may mount into guests (repeatable)")
	fs.BoolVar(&f.cfg.DisableWorkerConfinement, "no-worker-confinement", false, "start workers without their OS confinement (seccomp, Landlock, namespaces…), for debugging only")
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
			return cfg, fmt.Errorf("--resources: %v", err)
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
		return cfg, fmt.Errorf("--log-level: %v", err)
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
		return nil, fmt.Errorf("--gossip-timings %q: want lan or fast", f.timings)
	}
	g.BindAddr = f.gossipAddr
	if g.BindAddr == "" {
		ip, _, err := net.SplitHostPort(cfg.ListenAddr)
		if err != nil {
			return nil, fmt.Errorf("--listen %q: %v", cfg.ListenAddr, err)
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
			return nil, fmt.Errorf("--encrypt: %w", err)
		}
		g.EncryptKey = key
	}
	return cc, nil
}

// clientFlags binds the flags of commands that talk to a host.
type clientFlags struct {
	address, token, tlsCA string
}

// clientOnly parses the arguments of a command that takes only the client
// flags, and returns its client.
func clientOnly(name string, args []string) (*client.Client, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	cf := bindClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return cf.client()
}

// newTable writes aligned columns to stdout; header is tab-separated.
func newTable(header string) *tabwriter.Writer {
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, header)
	return w
}

func bindClientFlags(fs *flag.FlagSet) *clientFlags {
	f := &clientFlags{}
	fs.StringVar(&f.address, "address", "127.0.0.1:6380", "host to talk to")
	fs.StringVar(&f.token, "token", os.Getenv("RAYHOST_TOKEN"), "the cluster token (default $RAYHOST_TOKEN)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "talk HTTPS, trusting this CA certificate (PEM)")
	return f
}

func (f *clientFlags) client() (*client.Client, error) {
	var opts []client.Option
	if f.token != "" {
		opts = append(opts, client.WithToken(f.token))
	}
	if f.tlsCA != "" {
		pem, err := os.ReadFile(f.tlsCA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no certificate found", f.tlsCA)
		}
		opts = append(opts, client.WithTLS(&tls.Config{RootCAs: pool}))
	}
	return client.New(f.address, opts...), nil
}
