package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/rayhost/rayhost/host"
)

func cmdStart(args []string) error { return startHost("start", args) }

// cmdJoin starts a host that joins the cluster of the members given as
// arguments (gossip addresses), as --join would.
func cmdJoin(args []string) error { return startHost("join", args) }

func startHost(name string, args []string) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	hf := bindHostFlags(fs, "rayhost-data", "info", true)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if name == "join" {
		if fs.NArg() == 0 && len(hf.joins) == 0 {
			return fmt.Errorf("join: give the gossip address of at least one member (rayhost join [flags] HOST:PORT...)")
		}
		hf.joins = append(hf.joins, fs.Args()...)
	} else if fs.NArg() > 0 {
		return fmt.Errorf("start: unexpected arguments %v (to join a cluster, use rayhost join or --join)", fs.Args())
	}
	cfg, err := hf.config()
	if err != nil {
		return err
	}
	h, err := host.New(cfg)
	if err != nil {
		return err
	}
	fmt.Printf("rayhost host %s listening on %s (data in %s)\n", h.ID(), h.URL(), cfg.DataDir)
	if g := h.GossipAddr(); g != "" {
		fmt.Printf("gossip on %s: other hosts join with: rayhost join %s\n", g, g)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	fmt.Println("rayhost: shutting down")
	return h.Close()
}
