// Command rayhost runs Ray-style remote functions compiled to WebAssembly.
//
//	rayhost run ./examples/retrieve          # build and run a driver on an embedded host
//	rayhost start --listen 127.0.0.1:6380    # start a host
//	rayhost run --address 127.0.0.1:6380 app.wasm
//	rayhost submit --address 127.0.0.1:6380 app.wasm square 7
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/rayhost/rayhost/internal/worker"
)

const usage = `rayhost: Ray's task model for Go functions compiled to WebAssembly.

Usage:
  rayhost start  [flags]                       start a host (a new cluster) and serve until interrupted
  rayhost join   [flags] <gossip addr>...      start a host that joins a cluster
  rayhost status --address A                   list the cluster's hosts: state, total and free resources
  rayhost run    [flags] <module.wasm | ./pkg>  run a module's driver (embedded host without --address)
  rayhost submit --address A <module> <function> [json args...]
                                               submit one call and print its result as JSON
  rayhost health --address A                   print a host's id, resources and workers
  rayhost tasks  --address A [--state S]       list tasks and their states
  rayhost actors --address A                   list actors: id, class, name, state, host, calls
  rayhost timeline --address A > trace.json    task attempts as Chrome-trace JSON (Perfetto)
  rayhost microbenchmark [flags]               Ray's microbenchmark metrics, with baselines (from the repo root)
  rayhost worker                               (internal) a worker process, started by a host

Run 'rayhost <command> -h' for a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "start":
		err = cmdStart(args)
	case "join":
		err = cmdJoin(args)
	case "status":
		err = cmdStatus(args)
	case "run":
		err = cmdRun(args)
	case "submit":
		err = cmdSubmit(args)
	case "health":
		err = cmdHealth(args)
	case "tasks":
		err = cmdTasks(args)
	case "actors":
		err = cmdActors(args)
	case "microbenchmark":
		err = cmdMicrobenchmark(args)
	case "timeline":
		err = cmdTimeline(args)
	case "worker":
		err = worker.Main(args)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "rayhost: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		msg := err.Error()
		if !strings.HasPrefix(msg, "rayhost: ") {
			msg = "rayhost: " + msg
		}
		fmt.Fprintln(os.Stderr, msg)
		os.Exit(1)
	}
}
