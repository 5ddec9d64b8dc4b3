package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/rayhost/rayhost/host"
)

func cmdStart(args []string) error {
	fs := flag.NewFlagSet("start", flag.ContinueOnError)
	hf := bindHostFlags(fs, "rayhost-data", "info", true)
	if err := fs.Parse(args); err != nil {
		return err
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
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	fmt.Println("rayhost: shutting down")
	return h.Close()
}
