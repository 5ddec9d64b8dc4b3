package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/rayhost/rayhost/host"
)

// hostFlags binds the flags that configure a host (start, and run's
// embedded host) to a host.Config.
type hostFlags struct {
	cfg       host.Config
	resources string
	logLevel  string
}

func bindHostFlags(fs *flag.FlagSet, dataDir, logLevel string) *hostFlags {
	f := &hostFlags{cfg: host.DefaultConfig(dataDir)}
	fs.StringVar(&f.cfg.DataDir, "data-dir", dataDir, "directory for objects, modules and the compilation cache")
	fs.StringVar(&f.cfg.ListenAddr, "listen", f.cfg.ListenAddr, "address of the Connect API")
	fs.StringVar(&f.cfg.AdvertiseAddr, "advertise", "", "address others use to reach this host (default: the listen address)")
	fs.StringVar(&f.cfg.ID, "id", "", "host name (default: hostname-pid)")
	fs.Float64Var(&f.cfg.NumCPUs, "num-cpus", f.cfg.NumCPUs, "CPUs tasks may use")
	fs.Float64Var(&f.cfg.NumGPUs, "num-gpus", 0, "GPUs tasks may use")
	fs.StringVar(&f.resources, "resources", "", `custom resources as JSON, e.g. '{"disk": 2}'`)
	fs.IntVar(&f.cfg.Workers, "workers", -1, "warm worker processes (default: one per CPU)")
	fs.IntVar(&f.cfg.MaxWorkers, "max-workers", f.cfg.MaxWorkers, "most worker processes at once")
	fs.StringVar(&f.logLevel, "log-level", logLevel, "debug, info, warn or error")
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
	var level slog.Level
	if err := level.UnmarshalText([]byte(strings.ToUpper(f.logLevel))); err != nil {
		return cfg, fmt.Errorf("--log-level: %v", err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	return cfg, nil
}
