package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/rayhost/rayhost/guest-sdk/rayvet"
)

func newVetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "vet [packages]",
		Short: "check Remote calls against the remote functions' parameter types, before run time",
		Long: `Vet type-checks guest packages (as GOOS=wasip1 GOARCH=wasm) and reports each call of
Remote whose arguments do not fit the function it calls: the wrong number of arguments, a
value of the wrong type, or an ObjectRef of the wrong type. Remote takes ...any, so the Go
compiler cannot see these mistakes; without vet they fail when the task runs. rayhost run
vets a package before it builds it (--vet=false skips that). The analyzer is
github.com/rayhost/rayhost/guest-sdk/rayvet, for use in your own analysis drivers too.
Exit code 1 when there are findings.`,
		Example: `  rayhost vet ./...
  rayhost vet ./cmd/mydriver ./pkg/tasks`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, a []string) error {
			if len(a) == 0 {
				a = []string{"./..."}
			}
			return vet(cmd.Context(), a, cmd.OutOrStdout())
		},
	}
}

// vet runs the analyzer on the packages and fails if it finds anything.
func vet(ctx context.Context, patterns []string, w io.Writer) error {
	n, err := rayvet.Run(ctx, ".", patterns, w)
	if err != nil {
		return fmt.Errorf("vet: %w", err)
	}
	if n > 0 {
		return fmt.Errorf("vet: %d call(s) of Remote with arguments that do not fit (fix them, or run with --vet=false)", n)
	}
	return nil
}
