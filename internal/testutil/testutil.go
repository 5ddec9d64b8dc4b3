// Package testutil starts real rayhost hosts for tests, with the rayhost
// binary (for worker processes) and Go guests built once per test process
// and one wazero compilation cache shared between all tests (package
// build, re-exported here), and cleans up with t.Cleanup.
package testutil

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/testutil/build"
)

// The build half lives in package build (which imports nothing of
// rayhost, for internal tests); these are its names here.

// RepoRoot is the module's root directory.
func RepoRoot() string { return build.RepoRoot() }

// RayhostBinary builds ./cmd/rayhost once and returns its path.
func RayhostBinary(t testing.TB) string { t.Helper(); return build.RayhostBinary(t) }

// Guest builds the Go package pkg (relative to the repo root, e.g.
// "./examples/retrieve") as a wasip1 reactor once and returns its bytes.
func Guest(t testing.TB, pkg string) []byte { t.Helper(); return build.Guest(t, pkg) }

// Prebuild builds the rayhost binary and guest packages up front, for a
// TestMain (build.Prebuild).
func Prebuild(pkgs ...string) error { return build.Prebuild(pkgs...) }

// Main is build.Main: a TestMain that prebuilds pkgs, runs the tests and
// removes what it built.
func Main(m *testing.M, pkgs ...string) int { return build.Main(m, pkgs...) }

// Cleanup is build.Cleanup: it removes what this process built.
func Cleanup() { build.Cleanup() }

// HangGuard bounds a test's wait for something that must happen
// eventually (build.HangGuard).
const HangGuard = build.HangGuard

// CacheDir is the wazero compilation cache all test hosts share
// (build.CacheDir).
func CacheDir() string { return build.CacheDir() }

// HostConfig returns a config for a test host: a fresh data dir, a free
// port on loopback, worker processes from the rayhost binary, the shared
// compilation cache and logs at warn level into the test log.
func HostConfig(t testing.TB) host.Config {
	t.Helper()
	cfg := host.DefaultConfig(t.TempDir())
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.CacheDir = CacheDir()
	cfg.WorkerCommand = []string{RayhostBinary(t), "worker"}
	cfg.NumCPUs = 2
	cfg.Workers = 2
	cfg.ID = "test-" + strings.ReplaceAll(t.Name(), "/", "-")
	cfg.Logger = slog.New(slog.NewTextHandler(build.TestLog(t), &slog.HandlerOptions{Level: slog.LevelWarn}))
	return cfg
}

// StartHost starts a host with HostConfig, changed by mutate (may be nil),
// and closes it when the test ends.
func StartHost(t testing.TB, mutate func(*host.Config)) *host.Host {
	t.Helper()
	cfg := HostConfig(t)
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := host.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("closing the host: %v", err)
		}
	})
	return h
}

// Register registers the guest package pkg on c and returns its digest.
func Register(t testing.TB, c *client.Client, pkg string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), HangGuard)
	defer cancel()
	mod, err := c.RegisterModule(ctx, Guest(t, pkg), "")
	if err != nil {
		t.Fatalf("registering %s: %v", pkg, err)
	}
	return mod.Digest
}
