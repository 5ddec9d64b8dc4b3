package owner

import (
	"log/slog"
	"time"
)

// testConfig is host.DefaultConfig's owner part for a host on 2 CPUs
// whose data lives in dir, which is also the one directory tasks may be
// granted.
func testConfig(dir string) Config {
	return Config{ID: "test", Addr: "127.0.0.1:1", DataDir: dir, CacheDir: dir + "/cache", AllowedDirs: []string{dir},
		NumCPUs: 2, Workers: 2, MaxWorkers: 32,
		InlineObjectLimit: 100 << 10, MemoryCacheBytes: 256 << 20, MaxMessageBytes: 256 << 20,
		MaxModuleBytes: 64 << 20, MaxTaskEvents: 100_000,
		TaskMemoryLimit: 1 << 30, MaxTaskMemoryLimit: 4 << 30,
		MaxArgBytes: 64 << 20, MaxResultBytes: 256 << 20, MaxLogBytes: 16 << 20,
		MaxTaskDepth: 1000, MaxTreeTasks: 1_000_000,
		MaxModules: 1000, CompileTimeout: 2 * time.Minute, MaxModuleFunctions: 100_000, MaxFunctionBodyBytes: 1 << 20,
		// Tests advance the Fake clock by hours to fire attempt timeouts:
		// the refs they read stay held unless a test says otherwise.
		SessionTTL: 1000 * time.Hour, AnonymousRefTTL: 1000 * time.Hour, MaxSessions: 100, MaxSessionsPerClient: 10,
		Logger: slog.New(slog.DiscardHandler)}
}
