package main

import (
	"context"
	"flag"
	"os/signal"
	"syscall"

	"github.com/rayhost/rayhost/internal/microbench"
)

func cmdMicrobenchmark(args []string) error {
	fs := flag.NewFlagSet("microbenchmark", flag.ContinueOnError)
	cfg := microbench.DefaultConfig()
	fs.StringVar(&cfg.GuestPkg, "guest", cfg.GuestPkg, "the benchmark guest package (run from the repository root)")
	fs.IntVar(&cfg.CPUs, "num-cpus", cfg.CPUs, "CPU slots of the benchmarked host")
	fs.IntVar(&cfg.Runs, "runs", cfg.Runs, "timed runs per metric")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of each timed run")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "warm-up before the timed runs")
	fs.StringVar(&cfg.ProfileDir, "profile", "", "write CPU profiles of the host and its workers here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	_, err := microbench.Run(ctx, cfg)
	return err
}
