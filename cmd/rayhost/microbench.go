package main

import (
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/rayhost/rayhost/internal/microbench"
)

func newMicrobenchmarkCmd() *cobra.Command {
	cfg := microbench.DefaultConfig()
	soak := microbench.DefaultSoakConfig()
	var soakMode bool
	cmd := &cobra.Command{
		Use:   "microbenchmark [flags]",
		Short: "measure Ray's microbenchmark metrics, beside Ray's figures and the baselines",
		Long: `Microbenchmark starts a host with its own workers and measures the metrics of Ray's
'ray microbenchmark' (task and actor call rates, put and get throughput, wait, …) and prints
each beside Ray's published figure, the project's goal and the measured baselines; then
guest compute against native Go (examples/pi's kernel, examples/quicksort), the copies of a
large put (peak RSS), and tasks and pulls across two hosts. Run it from the repository root:
it builds the benchmark guest and the examples from source.

With --soak it runs the soak instead: a driver (./bench/soak) that runs a million tasks with
1 KiB results and 10,000 puts of 1 MiB, dropping its refs as it goes, on a host process of its
own; the host's RSS, its workers' and its data directory are printed at every tenth of the run.`,
		Example: `  rayhost microbenchmark
  rayhost microbenchmark --num-cpus 2 --runs 5 --profile /tmp/prof
  rayhost microbenchmark --only start --runs 10
  rayhost microbenchmark --soak --soak-tasks 100000 --soak-puts 1000`,
		RunE: func(cmd *cobra.Command, a []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if soakMode {
				soak.CPUs = cfg.CPUs
				_, err := microbench.RunSoak(ctx, soak)
				return err
			}
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
	fs.StringSliceVar(&cfg.Only, "only", nil, "run only these metrics (comma-separated: in-cluster names such as single_client_wait_1k_refs, or pi, quicksort, copies, cluster, start)")
	fs.BoolVar(&soakMode, "soak", false, "run the soak (issue 16) instead of the metrics")
	fs.StringVar(&soak.GuestPkg, "soak-guest", soak.GuestPkg, "the soak driver package")
	fs.IntVar(&soak.Tasks, "soak-tasks", soak.Tasks, "tasks the soak runs")
	fs.IntVar(&soak.Puts, "soak-puts", soak.Puts, "puts the soak makes")
	fs.IntVar(&soak.PutKiB, "soak-put-kib", soak.PutKiB, "size of each put, in KiB")
	fs.StringVar(&soak.Quota, "soak-store-quota", soak.Quota, "--store-quota of the soaked host (0: none)")
	fs.DurationVar(&soak.Idle, "soak-idle", soak.Idle, "wait this long after the driver ends before a last sample")
	return annotateEnv(cmd)
}
