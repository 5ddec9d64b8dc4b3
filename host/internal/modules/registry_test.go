package modules_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rayhost/rayhost/host/internal/modules"
	"github.com/rayhost/rayhost/internal/abi"
)

// hangGuard bounds waits for events that must happen; never a speed check.
const hangGuard = 30 * time.Second

// compiler is the in-memory twin of the host's workers: it "describes" a
// module by reading the function names the test put in it (see wasm), or
// answers what the test set.
type compiler struct {
	mu       sync.Mutex
	answer   func(mod *modules.Module) (abi.Value, error) // nil: describe
	warmed   []string
	describe atomic.Int32
	gate     chan struct{} // when set, Describe waits for a value (or ctx)
	inside   chan struct{} // when set, Describe sends on entering
}

func (c *compiler) Describe(ctx context.Context, mod *modules.Module, timeout time.Duration) (abi.Value, error) {
	c.describe.Add(1)
	if c.inside != nil {
		c.inside <- struct{}{}
	}
	if c.gate != nil {
		select {
		case <-c.gate:
		case <-ctx.Done():
			return abi.Value{}, ctx.Err()
		}
	}
	c.mu.Lock()
	answer := c.answer
	c.mu.Unlock()
	if answer != nil {
		return answer(mod)
	}
	b, _ := json.Marshal(abi.Description{ABI: 1, Functions: []abi.FunctionInfo{{Name: "add", NumArgs: 2, NumReturns: 1}}})
	return abi.Value{Codec: abi.CodecJSON, Data: b}, nil
}

func (c *compiler) Warm(_, path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.warmed = append(c.warmed, path)
}

func (c *compiler) warmedPaths() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.warmed...)
}

func newRegistry(t testing.TB, cfg modules.Config) (*modules.Registry, *compiler) {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "modules")
	}
	c := &compiler{}
	r, err := modules.New(cfg, c)
	if err != nil {
		t.Fatal(err)
	}
	return r, c
}

// uleb encodes v as unsigned LEB128.
func uleb(v int) []byte {
	var out []byte
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			out = append(out, b|0x80)
			continue
		}
		return append(out, b)
	}
}

func section(id byte, body []byte) []byte {
	return append(append([]byte{id}, uleb(len(body))...), body...)
}

// wasm is a module header with funcs defined functions whose bodies have
// bodySize bytes each; salt makes distinct modules (a custom section).
func wasm(funcs, bodySize int, salt string) []byte {
	out := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	out = append(out, section(0, append(append(uleb(len("salt")), "salt"...), salt...))...)
	fn := uleb(funcs)
	code := uleb(funcs)
	for range funcs {
		fn = append(fn, 0)
		code = append(append(code, uleb(bodySize)...), make([]byte, bodySize)...)
	}
	out = append(out, section(3, fn)...)
	return append(out, section(10, code)...)
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// moduleFiles lists the module files in dir (not their descriptions).
func moduleFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, f := range files(t, dir) {
		if strings.HasSuffix(f, ".wasm") {
			out = append(out, f)
		}
	}
	return out
}

func TestRegisterRefuses(t *testing.T) {
	for _, tt := range []struct {
		name    string
		cfg     modules.Config
		wasm    []byte
		modName string
		want    error
		msg     string
	}{
		{"not wasm", modules.Config{}, []byte("#!/bin/sh\nrm -rf /\n"), "", modules.ErrInvalidModule, "no \\0asm"},
		{"empty", modules.Config{}, nil, "", modules.ErrInvalidModule, "no \\0asm"},
		{"too large", modules.Config{MaxModuleBytes: 100}, wasm(1, 200, ""), "", modules.ErrInvalidModule, "the limit is 100"},
		{"bad name", modules.Config{}, wasm(1, 1, ""), "../../etc/passwd", modules.ErrInvalidArgument, "module name"},
		{"name too long", modules.Config{}, wasm(1, 1, ""), strings.Repeat("a", 129), modules.ErrInvalidArgument, "module name"},
		{"too many functions", modules.Config{MaxFunctions: 3}, wasm(4, 1, ""), "", modules.ErrInvalidModule, "4 functions, the limit is 3"},
		{"body too large", modules.Config{MaxFunctionBodyBytes: 10}, wasm(1, 11, ""), "", modules.ErrInvalidModule, "function body of 11 bytes"},
		{"section past the end", modules.Config{}, append([]byte{0, 'a', 's', 'm', 1, 0, 0, 0}, 3, 100, 1), "", modules.ErrInvalidModule, "past the end"},
		{"bad LEB128", modules.Config{}, append([]byte{0, 'a', 's', 'm', 1, 0, 0, 0}, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), "", modules.ErrInvalidModule, "section"},
		{"code body past the end", modules.Config{}, append([]byte{0, 'a', 's', 'm', 1, 0, 0, 0}, section(10, []byte{1, 50, 0})...), "", modules.ErrInvalidModule, "body past the end"},
		{"unknown import kind", modules.Config{}, append([]byte{0, 'a', 's', 'm', 1, 0, 0, 0}, section(2, []byte{1, 1, 'm', 1, 'f', 9})...), "", modules.ErrInvalidModule, "unknown kind 9"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, c := newRegistry(t, tt.cfg)
			_, err := r.Register(t.Context(), tt.wasm, tt.modName, false)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Register: %v, want %v with %q", err, tt.want, tt.msg)
			}
			if n := c.describe.Load(); n != 0 {
				t.Errorf("the module was described (%d times) before its checks passed", n)
			}
			if fs := files(t, r.Dir()); len(fs) != 0 {
				t.Errorf("files left behind: %v", fs)
			}
			// The registry still works.
			if _, err := r.Register(t.Context(), wasm(1, 1, "ok"), "ok", false); err != nil {
				t.Fatalf("a good module after: %v", err)
			}
		})
	}
}

func TestRegisterStoresDescribesAndWarms(t *testing.T) {
	r, c := newRegistry(t, modules.Config{})
	b := wasm(2, 3, "")
	mod, err := r.Register(t.Context(), b, "demo", false)
	if err != nil {
		t.Fatal(err)
	}
	if mod.Digest != digestOf(b) {
		t.Fatalf("digest %s, want %s", mod.Digest, digestOf(b))
	}
	if f, ok := mod.Funcs["add"]; !ok || f.NumArgs != 2 {
		t.Fatalf("functions %+v", mod.Funcs)
	}
	got, err := os.ReadFile(r.Path(mod.Digest))
	if err != nil || string(got) != string(b) {
		t.Fatalf("module file: %v", err)
	}
	if w := c.warmedPaths(); len(w) != 1 || w[0] != r.Path(mod.Digest) {
		t.Fatalf("warmed %v", w)
	}
	if w := r.Warm(); len(w) != 1 || w[0] != mod.Digest {
		t.Fatalf("Warm() = %v", w)
	}
	if r.Known(mod.Digest) != mod {
		t.Fatal("Known does not return the module")
	}
	for _, ref := range []string{"demo", mod.Digest} {
		if m, err := r.Lookup(t.Context(), ref); err != nil || m != mod {
			t.Fatalf("Lookup(%q) = %v, %v", ref, m, err)
		}
	}
	// Registering the same bytes again describes nothing more.
	if _, err := r.Register(t.Context(), b, "demo", false); err != nil {
		t.Fatal(err)
	}
	if n := c.describe.Load(); n != 1 {
		t.Fatalf("described %d times", n)
	}
}

func TestNames(t *testing.T) {
	r, _ := newRegistry(t, modules.Config{})
	a, err := r.Register(t.Context(), wasm(1, 1, "a"), "name", false)
	if err != nil {
		t.Fatal(err)
	}
	b := wasm(1, 1, "b")
	if _, err := r.Register(t.Context(), b, "name", false); !errors.Is(err, modules.ErrModuleExists) {
		t.Fatalf("taking a taken name: %v, want ErrModuleExists", err)
	}
	if m, _ := r.Lookup(t.Context(), "name"); m != a {
		t.Fatal("a refused registration re-pointed the name")
	}
	mb, err := r.Register(t.Context(), b, "name", true)
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := r.Lookup(t.Context(), "name"); m != mb {
		t.Fatal("replace did not re-point the name")
	}
	if m, _ := r.Lookup(t.Context(), a.Digest); m != a {
		t.Fatal("the old module is gone by digest")
	}
}

func TestLookupUnknown(t *testing.T) {
	r, c := newRegistry(t, modules.Config{})
	for _, ref := range []string{"", "nope", "../../../etc/passwd", strings.Repeat("0", 64), strings.Repeat("A", 64)} {
		if _, err := r.Lookup(t.Context(), ref); !errors.Is(err, modules.ErrModuleNotFound) {
			t.Errorf("Lookup(%q): %v, want ErrModuleNotFound", ref, err)
		}
	}
	if n := c.describe.Load(); n != 0 {
		t.Fatalf("described %d times", n)
	}
}

// TestRestart: a registry on the directory of an earlier one reads back
// the descriptions of its modules, by digest (names are not kept): looking
// a module up, or registering it again, runs no describe.
func TestRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "modules")
	r1, c1 := newRegistry(t, modules.Config{Dir: dir})
	b := wasm(1, 1, "")
	mod, err := r1.Register(t.Context(), b, "n", false)
	if err != nil {
		t.Fatal(err)
	}
	if n := c1.describe.Load(); n != 1 {
		t.Fatalf("described %d times", n)
	}
	r2, c2 := newRegistry(t, modules.Config{Dir: dir})
	if r2.Known(mod.Digest) != nil {
		t.Fatal("known before use")
	}
	m, err := r2.Lookup(t.Context(), mod.Digest)
	if err != nil || m.Funcs["add"].NumArgs != 2 || m.Digest != mod.Digest {
		t.Fatalf("Lookup after restart: %+v, %v", m, err)
	}
	if w := c2.warmedPaths(); len(w) != 1 || w[0] != r2.Path(mod.Digest) {
		t.Fatalf("warmed %v: a module read back is compiled in the workers too", w)
	}
	r3, c3 := newRegistry(t, modules.Config{Dir: dir})
	if m, err := r3.Register(t.Context(), b, "n", false); err != nil || m.Funcs["add"].NumReturns != 1 {
		t.Fatalf("registering again after restart: %+v, %v", m, err)
	}
	if n := c2.describe.Load() + c3.describe.Load(); n != 0 {
		t.Fatalf("described %d times after the restarts, want 0", n)
	}
}

// TestPersistedDescriptionRefused: a persisted description that is
// corrupted, of another module, of another format, or that a fresh
// description would fail (whoever wrote it) is not used: the module is
// described again, and the file replaced by a good one.
func TestPersistedDescriptionRefused(t *testing.T) {
	// Each module's description names a function after its digest, so a
	// description of another module shows.
	byDigest := func(mod *modules.Module) (abi.Value, error) {
		b, _ := json.Marshal(abi.Description{ABI: 1, Functions: []abi.FunctionInfo{{Name: "f" + mod.Digest[:8], NumArgs: 1, NumReturns: 1}}})
		return abi.Value{Codec: abi.CodecJSON, Data: b}, nil
	}
	// envelope writes a consistent file (as only the host could).
	envelope := func(digest string, desc []byte) []byte {
		h := sha256.New()
		h.Write([]byte(digest))
		h.Write([]byte{0})
		h.Write(desc)
		b, _ := json.Marshal(map[string]any{"format": 1, "abi": abi.Version, "digest": digest,
			"sha256": hex.EncodeToString(h.Sum(nil)), "description": json.RawMessage(desc)})
		return b
	}
	for _, tt := range []struct {
		name string
		// corrupt rewrites the persisted description of module a, given
		// its file and b's (another module's).
		corrupt func(a, b []byte, da, db string) []byte
	}{
		{"truncated", func(a, _ []byte, _, _ string) []byte { return a[:len(a)/2] }},
		{"empty", func(_, _ []byte, _, _ string) []byte { return nil }},
		{"a changed byte", func(a, _ []byte, da, _ string) []byte {
			return []byte(strings.Replace(string(a), "f"+da[:8], "g"+da[1:9], 1))
		}},
		{"another module's", func(_, b []byte, _, _ string) []byte { return b }},
		{"another module's, re-keyed", func(_, b []byte, da, db string) []byte {
			return []byte(strings.Replace(string(b), db, da, 1)) // the digest, not the description
		}},
		{"another format", func(a, _ []byte, _, _ string) []byte {
			return []byte(strings.Replace(string(a), `"format":1`, `"format":99`, 1))
		}},
		{"a duplicate function, consistent", func(_, _ []byte, da, _ string) []byte {
			desc, _ := json.Marshal(abi.Description{ABI: 1, Functions: []abi.FunctionInfo{{Name: "x"}, {Name: "x"}}})
			return envelope(da, desc)
		}},
		{"a registration error, consistent", func(_, _ []byte, da, _ string) []byte {
			desc, _ := json.Marshal(abi.Description{Error: "function x registered twice"})
			return envelope(da, desc)
		}},
		{"too large", func(_, _ []byte, da, _ string) []byte {
			desc, _ := json.Marshal(abi.Description{ABI: 1, Functions: []abi.FunctionInfo{{Name: strings.Repeat("x", modules.MaxDescriptionBytes)}}})
			return envelope(da, desc)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "modules")
			r1, c1 := newRegistry(t, modules.Config{Dir: dir})
			c1.answer = byDigest
			ma, err := r1.Register(t.Context(), wasm(1, 1, "a"), "", false)
			if err != nil {
				t.Fatal(err)
			}
			mb, err := r1.Register(t.Context(), wasm(1, 1, "b"), "", false)
			if err != nil {
				t.Fatal(err)
			}
			descA := filepath.Join(dir, ma.Digest+".desc.json")
			a, errA := os.ReadFile(descA)
			b, errB := os.ReadFile(filepath.Join(dir, mb.Digest+".desc.json"))
			if errA != nil || errB != nil {
				t.Fatalf("persisted descriptions: %v, %v", errA, errB)
			}
			if err := os.WriteFile(descA, tt.corrupt(a, b, ma.Digest, mb.Digest), 0o600); err != nil {
				t.Fatal(err)
			}

			r2, c2 := newRegistry(t, modules.Config{Dir: dir})
			c2.answer = byDigest
			m, err := r2.Lookup(t.Context(), ma.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if n := c2.describe.Load(); n != 1 {
				t.Fatalf("described %d times, want 1 (the persisted description refused)", n)
			}
			if _, ok := m.Funcs["f"+ma.Digest[:8]]; !ok || len(m.Funcs) != 1 {
				t.Fatalf("functions %v, want a's own", m.Funcs)
			}
			// The good description replaced the refused one.
			r3, c3 := newRegistry(t, modules.Config{Dir: dir})
			if m, err := r3.Lookup(t.Context(), ma.Digest); err != nil || m.Funcs["f"+ma.Digest[:8]].NumArgs != 1 {
				t.Fatalf("after: %+v, %v", m, err)
			}
			if n := c3.describe.Load(); n != 0 {
				t.Fatalf("described %d times after the refused description was replaced", n)
			}
		})
	}
}

func TestRefusedModuleLeavesNoFile(t *testing.T) {
	for _, tt := range []struct {
		name   string
		answer func(*modules.Module) (abi.Value, error)
		msg    string
	}{
		{"task error", func(*modules.Module) (abi.Value, error) {
			return (&abi.TaskError{Kind: abi.ErrorApplication, Message: "no ABI export"}).Encode(), nil
		}, "no ABI export"},
		{"compile timeout", func(*modules.Module) (abi.Value, error) {
			return (&abi.TaskError{Kind: abi.ErrorTimeout, Message: "killed"}).Encode(), nil
		}, "compiling it took longer than 1m0s"},
		{"undecodable", func(*modules.Module) (abi.Value, error) {
			return abi.Value{Codec: abi.CodecJSON, Data: []byte("{")}, nil
		}, "undecodable description"},
		{"description error", func(*modules.Module) (abi.Value, error) {
			b, _ := json.Marshal(abi.Description{Error: "function add registered twice"})
			return abi.Value{Codec: abi.CodecJSON, Data: b}, nil
		}, "registered twice"},
		{"a function listed twice", func(*modules.Module) (abi.Value, error) {
			b, _ := json.Marshal(abi.Description{Functions: []abi.FunctionInfo{{Name: "add"}, {Name: "add"}}})
			return abi.Value{Codec: abi.CodecJSON, Data: b}, nil
		}, "twice"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, c := newRegistry(t, modules.Config{CompileTimeout: time.Minute})
			c.answer = tt.answer
			_, err := r.Register(t.Context(), wasm(1, 1, ""), "bad", false)
			if !errors.Is(err, modules.ErrInvalidModule) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Register: %v, want ErrInvalidModule with %q", err, tt.msg)
			}
			if fs := files(t, r.Dir()); len(fs) != 0 {
				t.Fatalf("files left behind: %v", fs)
			}
			if _, err := r.Lookup(t.Context(), "bad"); !errors.Is(err, modules.ErrModuleNotFound) {
				t.Fatalf("the refused module's name: %v", err)
			}
			c.answer = nil
			if _, err := r.Register(t.Context(), wasm(1, 1, "good"), "good", false); err != nil {
				t.Fatalf("a good module after: %v", err)
			}
		})
	}
}

// TestDescribeFailureKeepsNothing: a describe that fails for the host's
// reasons (not the module's) is not recorded; the next lookup tries again.
func TestDescribeFailureKeepsNothing(t *testing.T) {
	r, c := newRegistry(t, modules.Config{})
	errGone := errors.New("no worker")
	c.answer = func(*modules.Module) (abi.Value, error) { return abi.Value{}, errGone }
	b := wasm(1, 1, "")
	if _, err := r.Register(t.Context(), b, "", false); !errors.Is(err, errGone) {
		t.Fatalf("Register: %v", err)
	}
	c.answer = nil
	if _, err := r.Lookup(t.Context(), digestOf(b)); err != nil {
		t.Fatalf("Lookup after: %v", err)
	}
}

func TestMaxModules(t *testing.T) {
	r, _ := newRegistry(t, modules.Config{MaxModules: 2})
	for i := range 2 {
		if _, err := r.Register(t.Context(), wasm(1, 1, string(rune('a'+i))), "", false); err != nil {
			t.Fatal(err)
		}
	}
	_, err := r.Register(t.Context(), wasm(1, 1, "c"), "", false)
	if !errors.Is(err, modules.ErrLimit) || !strings.Contains(err.Error(), "--max-modules") {
		t.Fatalf("a third module: %v, want ErrLimit", err)
	}
	if fs := moduleFiles(t, r.Dir()); len(fs) != 2 {
		t.Fatalf("module files %v", fs)
	}
	// One already kept still registers.
	if _, err := r.Register(t.Context(), wasm(1, 1, "a"), "again", false); err != nil {
		t.Fatalf("re-registering a kept module: %v", err)
	}
}

// TestConcurrentLoadsDescribeOnce: a hammer on one module from many
// goroutines: one describe, one module value.
func TestConcurrentLoadsDescribeOnce(t *testing.T) {
	r, c := newRegistry(t, modules.Config{})
	b := wasm(1, 1, "")
	var wg sync.WaitGroup
	mods := make([]*modules.Module, 16)
	errs := make([]error, len(mods))
	for i := range mods {
		wg.Go(func() { mods[i], errs[i] = r.Register(t.Context(), b, "", false) })
	}
	wg.Wait()
	for i := range mods {
		if errs[i] != nil || mods[i] != mods[0] {
			t.Fatalf("register %d: %v (%p, first %p)", i, errs[i], mods[i], mods[0])
		}
	}
	if n := c.describe.Load(); n != 1 {
		t.Fatalf("described %d times", n)
	}
}

// TestMaxCompiling: past MaxCompiling modules being described, one more
// waits, and gives up with its context.
func TestMaxCompiling(t *testing.T) {
	r, c := newRegistry(t, modules.Config{MaxCompiling: 1})
	c.gate = make(chan struct{})
	c.inside = make(chan struct{}, 2)
	first := make(chan error, 1)
	go func() {
		_, err := r.Register(context.Background(), wasm(1, 1, "first"), "", false)
		first <- err
	}()
	select {
	case <-c.inside:
	case <-time.After(hangGuard):
		t.Fatal("the first module was not described")
	}
	ctx, cancel := context.WithCancel(t.Context())
	second := make(chan error, 1)
	go func() {
		_, err := r.Register(ctx, wasm(1, 1, "second"), "", false)
		second <- err
	}()
	cancel()
	select {
	case err := <-second:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the waiting registration: %v, want context.Canceled", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("the waiting registration did not give up")
	}
	if n := c.describe.Load(); n != 1 {
		t.Fatalf("%d describes ran at once, the bound is 1", n)
	}
	close(c.gate)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}

func TestNewRefusesConfig(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  modules.Config
		c    modules.Compiler
	}{
		{"no dir", modules.Config{}, &compiler{}},
		{"no compiler", modules.Config{Dir: t.TempDir()}, nil},
		{"negative", modules.Config{Dir: t.TempDir(), MaxModules: -1}, &compiler{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := modules.New(tt.cfg, tt.c); !errors.Is(err, modules.ErrInvalidConfig) {
				t.Fatalf("New: %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// TestHammer: registrations of distinct modules under one name, lookups
// and Warm from many goroutines (-race); every module ends up kept.
func TestHammer(t *testing.T) {
	r, _ := newRegistry(t, modules.Config{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 5 {
				mod, err := r.Register(t.Context(), wasm(1, 1, string(rune('a'+i))+string(rune('a'+j))), "shared", true)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := r.Lookup(t.Context(), "shared"); err != nil {
					t.Error(err)
				}
				if r.Known(mod.Digest) != mod {
					t.Error("Known lost a module")
				}
				_ = r.Warm()
			}
		})
	}
	wg.Wait()
	if n := len(r.Warm()); n != 40 {
		t.Fatalf("%d modules kept, want 40", n)
	}
}
