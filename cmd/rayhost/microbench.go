package main

import (
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/rayhost/rayhost/internal/microbench"
)

func newMicrobenchmarkCmd() *cobra.Command {
	cfg := microbench.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "microbenchmark [flags]",
		Short: "measure Ray's microbenchmark metrics, beside Ray's figures and the baselines",
		Long: `Microbenchmark starts a host with its own workers and measures the metrics of Ray's
'ray microbenchmark' (task and actor call rates, put and get throughput, wait, …) and prints
each beside Ray's published figure, the project's goal and the measured baselines. Run it
from the repository root: it builds the benchmark guest from source.`,
		Example: `  rayhost microbenchmark
  rayhost microbenchmark --num-cpus 2 --runs 5 --profile /tmp/prof`,
		RunE: func(cmd *cobra.Command, a []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			_, err := microbench.Run(ctx, cfg)
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.GuestPkg, "guest", cfg.GuestPkg, "the benchmark guest package (run from the repository root)")
	fs.IntVar(&cfg.CPUs, "num-cpus", cfg.CPUs, "CPU slots of the benchmarked host")
	fs.IntVar(&cfg.Runs, "runs", cfg.Runs, "timed runs per metric")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of each timed run")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "warm-up before the timed runs")
	fs.StringVar(&cfg.ProfileDir, "profile", "", "write CPU profiles of the host and its workers here")
	return annotateEnv(cmd)
}
