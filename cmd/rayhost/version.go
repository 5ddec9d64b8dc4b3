package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// versionInfo is what `rayhost version` prints, from the build's own
// record (debug.ReadBuildInfo).
type versionInfo struct {
	Module, Version, Revision, Time string
	Modified                        bool
	Go, Platform                    string
}

func buildVersion() versionInfo {
	v := versionInfo{Module: "github.com/rayhost/rayhost", Version: "(devel)", Go: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Path != "" {
		v.Module = bi.Main.Path
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "print rayhost's version, VCS revision and Go version",
		Long: `Version prints the module version and the VCS revision this binary was built from (as the
go command recorded them: 'go build' in a git checkout records the revision; 'go run' and
-buildvcs=false do not), the Go version and the platform.`,
		Example: `  rayhost version
  rayhost version --json`,
		RunE: func(cmd *cobra.Command, a []string) error {
			v := buildVersion()
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), v)
			}
			rev := v.Revision
			if rev == "" {
				rev = "unknown"
			}
			if v.Modified {
				rev += " (modified)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rayhost %s\nmodule   %s\nrevision %s\n", v.Version, v.Module, rev)
			if v.Time != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "built    %s\n", v.Time)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "go       %s %s\n", v.Go, v.Platform)
			return nil
		},
	}
	bindJSON(cmd, &asJSON)
	return cmd
}
