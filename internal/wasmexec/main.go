// Command wasmexec runs a wasip1 test binary of a guest package (one that
// imports the "rayhost" host module) under wazero, with the host module
// stubbed: every call answers "unknown op". It is for benchmarks of guest
// code that never reaches the host, such as the value codec's
// (docs/RATIONALE.md):
//
//	go build -o /tmp/wasmexec ./internal/wasmexec
//	GOOS=wasip1 GOARCH=wasm go test -exec /tmp/wasmexec -run '^$' -bench BenchmarkCodec ./guest-sdk/ray
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/rayhost/rayhost/internal/abi"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: wasmexec module.wasm [args...]")
		os.Exit(2)
	}
	os.Exit(run(os.Args[1], os.Args[1:]))
}

func run(path string, args []string) int {
	ctx := context.Background()
	bin, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer rt.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	i32, i64 := api.ValueTypeI32, api.ValueTypeI64
	_, err = rt.NewHostModuleBuilder(abi.ImportModule).
		NewFunctionBuilder().
		WithGoFunction(api.GoFunc(func(ctx context.Context, stack []uint64) {
			stack[0] = api.EncodeI64(int64(abi.ErrCodeUnknownOp))
		}), []api.ValueType{i32, i32, i32}, []api.ValueType{i64}).
		Export(abi.ImportCall).
		NewFunctionBuilder().
		WithGoFunction(api.GoFunc(func(ctx context.Context, stack []uint64) { stack[0] = 0 }),
			[]api.ValueType{i32, i32}, []api.ValueType{i32}).
		Export(abi.ImportRecv).
		Instantiate(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg := wazero.NewModuleConfig().WithArgs(args...).WithStdout(os.Stdout).WithStderr(os.Stderr).
		WithSysWalltime().WithSysNanotime().WithSysNanosleep().WithRandSource(nil).
		WithFSConfig(wazero.NewFSConfig().WithDirMount(wd, "/"))
	for _, kv := range os.Environ() {
		for i := range kv {
			if kv[i] == '=' {
				cfg = cfg.WithEnv(kv[:i], kv[i+1:])
				break
			}
		}
	}
	_, err = rt.InstantiateWithConfig(ctx, bin, cfg)
	if exit, ok := err.(*sys.ExitError); ok {
		return int(exit.ExitCode())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
