// Command rayhost runs Ray-style remote functions compiled to WebAssembly.
//
//	rayhost run ./examples/retrieve          # build and run a driver on an embedded host
//	rayhost start --listen 127.0.0.1:6380    # start a host
//	rayhost run --address 127.0.0.1:6380 ./examples/pi
//	rayhost submit --address 127.0.0.1:6380 app.wasm square 7
//
// The command line is built with cobra (docs/RATIONALE.md says why):
// flags go anywhere on the line, every flag can also be set with an
// environment variable RAYHOST_<FLAG>, and `rayhost completion` prints
// shell completion scripts.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}

// execute runs the command line args and returns the process's exit code:
// 0, 1 when the command failed, 2 for a usage mistake.
func execute(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil {
		return 0
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "rayhost: ") {
		msg = "rayhost: " + msg
	}
	fmt.Fprintln(stderr, msg)
	if isUsageError(err) || strings.HasPrefix(err.Error(), "unknown command") {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return 2
	}
	return 1
}
