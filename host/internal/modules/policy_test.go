package modules_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rayhost/rayhost/host/internal/modules"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// realDir is a new directory by its real path (TempDir may be below a
// symbolic link, as on macOS).
func realDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func newPolicy(t *testing.T, cfg modules.PolicyConfig) *modules.Policy {
	t.Helper()
	p, err := modules.NewPolicy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrepare(t *testing.T) {
	allowed := realDir(t)
	p := newPolicy(t, modules.PolicyConfig{AllowedDirs: []string{allowed}, MaxTaskMemoryLimit: 64 << 20, MaxTaskTimeout: time.Minute})
	mod := &modules.Module{Digest: strings.Repeat("ab", 32), Funcs: map[string]abi.FunctionInfo{
		"add": {Name: "add", NumArgs: 2}, "any": {Name: "any", NumArgs: -1}}}
	ok := modules.Call{Module: mod, Function: "add", NumArgs: 2, Resources: abi.Resources{CPUs: -1}}
	for _, tt := range []struct {
		name string
		edit func(c *modules.Call)
		want error
		msg  string
	}{
		{"ok", func(c *modules.Call) {}, nil, ""},
		{"variadic", func(c *modules.Call) { c.Function, c.NumArgs = "any", 7 }, nil, ""},
		{"unknown function", func(c *modules.Call) { c.Function = "sub" }, modules.ErrFunctionNotFound, `"sub" in module abababababab`},
		{"wrong arguments", func(c *modules.Call) { c.NumArgs = 3 }, modules.ErrInvalidArgument, "takes 2 arguments, got 3"},
		{"negative cpus", func(c *modules.Call) { c.Resources.CPUs = -2 }, modules.ErrInvalidArgument, "num_cpus"},
		{"custom resource named CPU", func(c *modules.Call) { c.Resources.Custom = []abi.Custom{{Name: "CPU", Amount: 1}} }, modules.ErrInvalidArgument, ""},
		{"memory over 4 GiB", func(c *modules.Call) { c.Limits.MemoryPages = 65537 }, modules.ErrInvalidArgument, "over 4 GiB"},
		{"negative timeout", func(c *modules.Call) { c.Limits.TimeoutNs = -1 }, modules.ErrInvalidArgument, "negative timeout"},
		{"memory above the cap", func(c *modules.Call) { c.Limits.MemoryPages = 65536 }, modules.ErrLimit, "--max-task-memory-mib"},
		{"timeout above the cap", func(c *modules.Call) { c.Limits.TimeoutNs = int64(time.Hour) }, modules.ErrLimit, "--max-task-timeout"},
		{"mount outside", func(c *modules.Call) { c.Grants.Mounts = []abi.Mount{{Host: "/etc", Guest: "/etc"}} }, modules.ErrPermissionDenied, "--allow-dir"},
		{"bad env", func(c *modules.Call) { c.Grants.Env = []abi.KV{{Name: "A=B", Value: "x"}} }, modules.ErrInvalidArgument, "environment variable"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.edit(&c)
			got, err := p.Prepare(c)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if got.Resources.CPU != scheduler.Unit { // CPUs -1: the default, 1
					t.Fatalf("resources %+v, want 1 CPU", got.Resources)
				}
				return
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Prepare: %v, want %v with %q", err, tt.want, tt.msg)
			}
		})
	}
}

func TestCheckGrants(t *testing.T) {
	allowed := realDir(t)
	outside := realDir(t)
	sub := filepath.Join(allowed, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	escape := filepath.Join(allowed, "escape")
	if err := os.Symlink(outside, escape); err != nil {
		t.Fatal(err)
	}
	inner := filepath.Join(allowed, "inner")
	if err := os.Symlink(sub, inner); err != nil {
		t.Fatal(err)
	}
	p := newPolicy(t, modules.PolicyConfig{AllowedDirs: []string{allowed}})
	for _, tt := range []struct {
		name     string
		mount    abi.Mount
		want     error
		resolved string
	}{
		{"the allowed dir", abi.Mount{Host: allowed, Guest: "/data"}, nil, allowed},
		{"below it", abi.Mount{Host: sub, Guest: "/data"}, nil, sub},
		{"dot-dot inside", abi.Mount{Host: sub + "/../sub", Guest: "/data"}, nil, sub},
		{"a link that stays inside", abi.Mount{Host: inner, Guest: "/data"}, nil, sub},
		{"dot-dot out", abi.Mount{Host: allowed + "/../" + filepath.Base(outside), Guest: "/data"}, modules.ErrPermissionDenied, ""},
		{"a link out", abi.Mount{Host: escape, Guest: "/data"}, modules.ErrPermissionDenied, ""},
		{"a sibling with the prefix", abi.Mount{Host: allowed + "x", Guest: "/data"}, modules.ErrPermissionDenied, ""},
		{"relative host path", abi.Mount{Host: "data", Guest: "/data"}, modules.ErrPermissionDenied, ""},
		{"relative guest path", abi.Mount{Host: allowed, Guest: "data"}, modules.ErrPermissionDenied, ""},
		{"missing", abi.Mount{Host: filepath.Join(allowed, "nope"), Guest: "/data"}, modules.ErrPermissionDenied, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := abi.Grants{Mounts: []abi.Mount{tt.mount}}
			got, err := p.CheckGrants(g)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("CheckGrants: %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Mounts[0].Host != tt.resolved {
				t.Fatalf("resolved to %q, want %q", got.Mounts[0].Host, tt.resolved)
			}
		})
	}
	for _, kv := range []abi.KV{{Name: ""}, {Name: "A=B"}, {Name: "A\x00"}, {Name: "A", Value: "x\x00y"}} {
		if _, err := p.CheckGrants(abi.Grants{Env: []abi.KV{kv}}); !errors.Is(err, modules.ErrInvalidArgument) {
			t.Errorf("env %q: %v, want ErrInvalidArgument", kv, err)
		}
	}
	if _, err := newPolicy(t, modules.PolicyConfig{}).CheckGrants(abi.Grants{Mounts: []abi.Mount{{Host: allowed, Guest: "/d"}}}); !errors.Is(err, modules.ErrPermissionDenied) {
		t.Errorf("a host that allows no directory granted one: %v", err)
	}
}

func TestWithin(t *testing.T) {
	for _, tt := range []struct {
		path, dir string
		want      bool
	}{
		{"/a/b", "/a/b", true},
		{"/a/b/c", "/a/b", true},
		{"/a/bc", "/a/b", false},
		{"/a", "/a/b", false},
		{"/anything", "/", true},
	} {
		if got := modules.Within(tt.path, tt.dir); got != tt.want {
			t.Errorf("Within(%q, %q) = %v", tt.path, tt.dir, got)
		}
	}
}

func TestAttenuate(t *testing.T) {
	held := abi.Grants{
		Mounts: []abi.Mount{{Host: "/data/ro", Guest: "/ro", ReadOnly: true}, {Host: "/data/rw", Guest: "/rw"}},
		Env:    []abi.KV{{Name: "A", Value: "1"}},
	}
	for _, tt := range []struct {
		name string
		g    abi.Grants
		ok   bool
	}{
		{"nothing", abi.Grants{}, true},
		{"the same", held, true},
		{"below, read-only", abi.Grants{Mounts: []abi.Mount{{Host: "/data/ro/x", Guest: "/x", ReadOnly: true}}}, true},
		{"read-only of read-write", abi.Grants{Mounts: []abi.Mount{{Host: "/data/rw", Guest: "/x", ReadOnly: true}}}, true},
		{"read-write of read-only", abi.Grants{Mounts: []abi.Mount{{Host: "/data/ro", Guest: "/x"}}}, false},
		{"above", abi.Grants{Mounts: []abi.Mount{{Host: "/data", Guest: "/x", ReadOnly: true}}}, false},
		{"a prefix sibling", abi.Grants{Mounts: []abi.Mount{{Host: "/data/rwx", Guest: "/x"}}}, false},
		{"env held", abi.Grants{Env: []abi.KV{{Name: "A", Value: "1"}}}, true},
		{"env with another value", abi.Grants{Env: []abi.KV{{Name: "A", Value: "2"}}}, false},
		{"env not held", abi.Grants{Env: []abi.KV{{Name: "B", Value: "1"}}}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := modules.Attenuate(held, tt.g)
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, modules.ErrPermissionDenied)) {
				t.Fatalf("Attenuate: %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestNewPolicyRefusesConfig(t *testing.T) {
	for _, cfg := range []modules.PolicyConfig{
		{MaxTaskMemoryLimit: -1}, {MaxTaskMemoryLimit: 5 << 30}, {MaxTaskTimeout: -1},
		{AllowedDirs: []string{"relative"}}, {AllowedDirs: []string{"/a/../b"}},
	} {
		if _, err := modules.NewPolicy(cfg); !errors.Is(err, modules.ErrInvalidConfig) {
			t.Errorf("NewPolicy(%+v): %v, want ErrInvalidConfig", cfg, err)
		}
	}
}
