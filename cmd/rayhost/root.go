package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/rayhost/rayhost/internal/worker"
)

// usageError is a mistake on the command line (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func isUsageError(err error) bool {
	var u usageError
	return errors.As(err, &u)
}

// envPrefix names the environment variable of every flag:
// --num-cpus is RAYHOST_NUM_CPUS.
const envPrefix = "RAYHOST_"

func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// newRootCmd builds the whole command tree, writing to stdout and stderr.
func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "rayhost",
		Short: "Ray's task model for Go functions compiled to WebAssembly",
		Long: `rayhost runs Go functions compiled with GOOS=wasip1 GOARCH=wasm as Ray-style remote
functions: .Remote() returns an ObjectRef, Get, Wait and Put work as in Ray, tasks submit
tasks, generators stream and actors keep state, on one host or a cluster of hosts.

Every flag can also be set with an environment variable: --address is RAYHOST_ADDRESS,
--num-cpus is RAYHOST_NUM_CPUS, and so on. A flag on the command line wins.`,
		Example: `  rayhost run ./examples/retrieve                 # build a package and run its driver on an embedded host
  rayhost start --listen 127.0.0.1:6380            # start a host, then:
  rayhost run --address 127.0.0.1:6380 ./examples/pi
  rayhost tasks --state failed                     # what failed, and why`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Flags that do not parse are usage mistakes (exit 2).
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return applyEnv(cmd.Flags())
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return usageError{err} })
	root.AddGroup(&cobra.Group{ID: "run", Title: "Running programs:"},
		&cobra.Group{ID: "host", Title: "Hosts and clusters:"},
		&cobra.Group{ID: "inspect", Title: "Inspecting a host:"})
	for _, c := range []*cobra.Command{newRunCmd(), newSubmitCmd(), newVetCmd()} {
		c.GroupID = "run"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{newStartCmd(), newJoinCmd(), newStatusCmd(), newHealthCmd(), newKeygenCmd()} {
		c.GroupID = "host"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{newTasksCmd(), newTaskCmd(), newActorsCmd(), newMemoryCmd(), newTimelineCmd()} {
		c.GroupID = "inspect"
		root.AddCommand(c)
	}
	root.AddCommand(newMicrobenchmarkCmd(), newVersionCmd(), newWorkerCmd())
	for _, c := range root.Commands() {
		if c.Args == nil {
			c.Args = cobra.NoArgs
		}
	}
	return root
}

// applyEnv sets each flag not given on the command line from its
// environment variable, if set.
func applyEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Annotations["noenv"] != nil {
			return
		}
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok || v == "" {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = usagef("$%s: %v", envName(f.Name), e)
		}
	})
	return err
}

// annotateEnv adds "(env RAYHOST_X)" to the usage of every flag of c, so
// --help shows where each flag can also come from.
func annotateEnv(c *cobra.Command) *cobra.Command {
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" && f.Annotations["noenv"] == nil {
			f.Usage += " (env " + envName(f.Name) + ")"
		}
	})
	return c
}

// args wraps a cobra positional-argument check so its mistakes exit 2.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := check(cmd, a); err != nil {
			return usageError{err}
		}
		return nil
	}
}

func newWorkerCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "worker",
		Short:              "a worker process, started by a host (internal)",
		Hidden:             true,
		DisableFlagParsing: true,
		Args:               cobra.ArbitraryArgs,
		RunE:               func(cmd *cobra.Command, args []string) error { return worker.Main(args) },
	}
}
