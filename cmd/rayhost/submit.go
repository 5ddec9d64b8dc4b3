package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/guest-sdk/ray"
)

func newSubmitCmd() *cobra.Command {
	var cf *clientFlags
	var timeout time.Duration
	var gf *grantFlags
	cmd := &cobra.Command{
		Use:   "submit [flags] <module.wasm | ./go/package | name | digest> <function> [json args...]",
		Short: "submit one call of a remote function and print its result as JSON",
		Long: `Submit calls one remote function of a module and prints its result as JSON (bytes as
base64). The module is a .wasm file or a Go package directory (built for wasip1, as run
does), both registered first, or the name or sha256 digest of a module the host already has.
Each argument is JSON: quote strings ('"text"'). A failed call prints the task's error, with
the guest's stack for a panic, and exits 1.`,
		Example: `  rayhost submit ./host/testdata/guest add 2 3           # prints 5
  rayhost submit --address 10.0.0.1:6380 guest.wasm greet '"Ray"'
  rayhost submit guest add 2 3                            # a module registered as "guest"`,
		Args: args(cobra.MinimumNArgs(2)),
		RunE: func(cmd *cobra.Command, a []string) (err error) {
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			var callArgs []any
			for i, s := range a[2:] {
				if !json.Valid([]byte(s)) {
					return usagef("argument %d is not JSON: %s (quote strings: '\"text\"')", i+1, s)
				}
				callArgs = append(callArgs, json.RawMessage(s))
			}
			mounts, env, err := gf.parse()
			if err != nil {
				return err
			}
			c, base, err := cf.client()
			if err != nil {
				return err
			}
			defer func() {
				// A failed call's error stays readable for `rayhost task` (which
				// the message points to) until the session expires on the host
				// (--session-ttl); a call that worked lets go of its result now.
				if err == nil {
					_ = c.Close()
				}
			}()
			module := a[0]
			if isModuleSource(module) {
				wasm, err := loadModule(ctx, module, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				mod, err := register(ctx, c, base, wasm, module)
				if err != nil {
					return err
				}
				module = mod.Digest
			}
			start := time.Now()
			refs, err := c.SubmitCall(ctx, client.Call{Module: module, Function: a[1], Args: callArgs, Mounts: mounts, Env: env})
			if err != nil {
				if errors.Is(err, client.ErrNotFound) && isDir(module) {
					return fmt.Errorf("%w\n(to build the package in directory %s, write ./%s)", err, module, module)
				}
				return explain(ctx, err, c, base, false)
			}
			vals, err := c.GetValues(ctx, refs[:1])
			if err != nil {
				var te *ray.TaskError
				if errors.As(err, &te) {
					return errors.New(describeTaskError(te))
				}
				return explain(ctx, err, c, base, true)
			}
			out := cmd.OutOrStdout()
			if vals[0].IsRaw {
				b, _ := json.Marshal(vals[0].Raw) // base64, the JSON form of bytes
				fmt.Fprintln(out, string(b))
			} else {
				fmt.Fprintln(out, string(vals[0].JSON))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "rayhost: %s done in %s\n", a[1], time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	fs := cmd.Flags()
	cf = bindClientFlags(fs, "127.0.0.1:6380")
	fs.DurationVar(&timeout, "timeout", 0, "how long to wait for the result (0: no limit)")
	gf = bindGrantFlags(fs)
	return annotateEnv(cmd)
}

// isModuleSource reports whether arg names a module to read or build
// rather than one the host has: a .wasm file or a package path.
func isModuleSource(arg string) bool {
	return strings.HasSuffix(arg, ".wasm") || strings.HasPrefix(arg, "./") || strings.HasPrefix(arg, "../") ||
		strings.HasPrefix(arg, "/") || arg == "." || arg == ".."
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// describeTaskError prints a task's failure for people: what failed where,
// then its cause and the guest's stack.
func describeTaskError(te *ray.TaskError) string {
	var b strings.Builder
	fmt.Fprintf(&b, "task %s (%s) failed on attempt %d", te.Function, short(te.TaskID), te.Attempt)
	if te.Host != "" {
		fmt.Fprintf(&b, " on %s", te.Host)
	}
	fmt.Fprintf(&b, ": %s: %s", te.Kind, te.Message)
	if te.Code != "" {
		fmt.Fprintf(&b, " (code %s)", te.Code)
	}
	for c := te.Cause; c != nil; c = c.Cause {
		fmt.Fprintf(&b, "\ncaused by: task %s (%s): %s: %s", c.Function, short(c.TaskID), c.Kind, c.Message)
	}
	if te.Stack != "" {
		b.WriteString("\nguest stack:\n" + strings.TrimRight(te.Stack, "\n"))
	}
	if te.TaskID != "" {
		fmt.Fprintf(&b, "\n(rayhost task %s shows its attempts)", short(te.TaskID))
	}
	return b.String()
}

func short(id string) string { return id[:min(len(id), 32)] }

func newHealthCmd() *cobra.Command {
	var cf *clientFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "health [flags]",
		Short: "print a host's id, address, workers and resources",
		Long: `Health asks one host how it is: its id and address, its worker processes, its total
and free resources, and the OS confinement layers its workers run under (each in force or not,
and why). It exits 1 when no host answers, so it serves as a liveness check.`,
		Example: `  rayhost health --address 127.0.0.1:6380
  rayhost health --json | jq .AvailableCPUs`,
		RunE: func(cmd *cobra.Command, a []string) error {
			c, base, err := cf.client()
			if err != nil {
				return err
			}
			defer c.Close()
			h, err := c.Health(cmd.Context())
			if err != nil {
				return explain(cmd.Context(), err, c, base, false)
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), h)
			}
			w := newTable(cmd.OutOrStdout(), "HOST\tADDRESS\tWORKERS\tTOTAL\tFREE")
			total := map[string]float64{"CPU": h.TotalCPUs, "GPU": h.TotalGPUs}
			free := map[string]float64{"CPU": h.AvailableCPUs, "GPU": h.AvailableGPUs}
			for k, v := range h.Custom {
				total[k] = v
			}
			for k, v := range h.AvailableCustom {
				free[k] = v
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", h.HostID, h.Address, h.Workers, formatResources(total), formatResources(free))
			if err := w.Flush(); err != nil {
				return err
			}
			if len(h.WorkerConfinement) == 0 {
				return nil
			}
			fmt.Fprintln(cmd.OutOrStdout())
			w = newTable(cmd.OutOrStdout(), "WORKER CONFINEMENT\tIN FORCE\tDETAIL")
			for _, l := range h.WorkerConfinement {
				in := "yes"
				if !l.Active {
					in = "NO"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\n", l.Name, in, firstLine(l.Detail, 100))
			}
			return w.Flush()
		},
	}
	cf = bindClientFlags(cmd.Flags(), "127.0.0.1:6380")
	bindJSON(cmd, &asJSON)
	return annotateEnv(cmd)
}

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func bindJSON(cmd *cobra.Command, v *bool) {
	cmd.Flags().BoolVar(v, "json", false, "print JSON instead of a table")
}
