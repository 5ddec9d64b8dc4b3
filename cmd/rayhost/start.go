package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/rayhost/rayhost/host"
)

func newStartCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "start [flags]",
		Short: "start a host (a new cluster) and serve until interrupted",
		Long: `Start runs a host: the Connect API (gRPC, Connect and plain JSON over HTTP) on --listen,
worker processes that run guests, the object store and the compilation cache in --data-dir,
and Serf gossip for other hosts to join. It serves until SIGINT or SIGTERM, then stops its
workers and closes the store; objects and modules survive a restart on the same --data-dir.`,
		Example: `  rayhost start --listen 127.0.0.1:6380 --num-cpus 4
  RAYHOST_TOKEN=s3cret rayhost start --listen 0.0.0.0:6380 --tls-cert cert.pem --tls-key key.pem --allow-dir /srv/data`,
		Args: func(cmd *cobra.Command, a []string) error {
			if len(a) > 0 {
				return usagef("start takes no arguments, got %q: to join a cluster, use rayhost join ADDRESS (or --join ADDRESS)", a)
			}
			return nil
		},
	}
	return hostCmd(cmd)
}

func newJoinCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "join [flags] <gossip address>...",
		Short: "start a host that joins a cluster",
		Long: `Join starts a host, as start does, that joins the cluster of the members given as gossip
addresses (HOST:PORT, port 7946 by default on the member's API IP). It retries until one
answers or --join-timeout passes. Flags may come before or after the addresses.`,
		Example: `  rayhost join 10.0.0.1:7946 --listen 10.0.0.2:6380
  rayhost join --encrypt "$KEY" --data-dir /var/lib/rayhost 10.0.0.1:7946 10.0.0.3:7946`,
		Args: args(cobra.MinimumNArgs(1)),
	}
	return hostCmd(cmd)
}

// hostCmd gives cmd the host flags and runs a host until a signal.
func hostCmd(cmd *cobra.Command) *cobra.Command {
	hf := bindHostFlags(cmd.Flags(), "rayhost-data", "info", true)
	cmd.RunE = func(cmd *cobra.Command, a []string) error {
		hf.joins = append(hf.joins, a...)
		cfg, err := hf.config()
		if err != nil {
			return err
		}
		h, err := host.New(cfg)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		fmt.Fprintf(out, "rayhost host %s listening on %s (data in %s)\n", h.ID(), h.URL(), cfg.DataDir)
		if g := h.GossipAddr(); g != "" {
			fmt.Fprintf(out, "gossip on %s: other hosts join with: rayhost join %s\n", g, g)
		}
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		fmt.Fprintln(out, "rayhost: shutting down")
		return h.Close()
	}
	return annotateEnv(cmd)
}
