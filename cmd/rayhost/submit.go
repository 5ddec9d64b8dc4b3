package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rayhost/rayhost/client"
)

func cmdSubmit(args []string) error {
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	cf := bindClientFlags(fs)
	timeout := fs.Duration("timeout", 0, "how long to wait for the result (0: no limit)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: rayhost submit --address A <module.wasm | digest | name> <function> [json args...]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		fs.Usage()
		return fmt.Errorf("submit needs a module and a function")
	}
	ctx := context.Background()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	module := fs.Arg(0)
	if strings.HasSuffix(module, ".wasm") {
		wasm, err := os.ReadFile(module)
		if err != nil {
			return err
		}
		mod, err := c.RegisterModule(ctx, wasm, "")
		if err != nil {
			return err
		}
		module = mod.Digest
	}
	var callArgs []any
	for i, a := range fs.Args()[2:] {
		if !json.Valid([]byte(a)) {
			return fmt.Errorf("argument %d is not JSON: %s (quote strings: '\"text\"')", i+1, a)
		}
		callArgs = append(callArgs, json.RawMessage(a))
	}
	start := time.Now()
	ref, err := c.Submit(ctx, module, fs.Arg(1), callArgs...)
	if err != nil {
		return err
	}
	vals, err := c.GetValues(ctx, []client.ObjectRef{ref})
	if err != nil {
		return err
	}
	if vals[0].IsRaw {
		b, _ := json.Marshal(vals[0].Raw) // base64, the JSON form of bytes
		fmt.Println(string(b))
	} else {
		fmt.Println(string(vals[0].JSON))
	}
	fmt.Fprintf(os.Stderr, "rayhost: %s done in %s\n", fs.Arg(1), time.Since(start).Round(time.Millisecond))
	return nil
}

func cmdHealth(args []string) error {
	c, err := clientOnly("health", args)
	if err != nil {
		return err
	}
	h, err := c.Health(context.Background())
	if err != nil {
		return err
	}
	b, _ := json.MarshalIndent(h, "", "  ")
	fmt.Println(string(b))
	return nil
}
