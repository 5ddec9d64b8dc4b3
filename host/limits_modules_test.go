// This file holds the tests of the limits on modules: the caps checked when
// a module is registered, the compile deadline, and the number of modules.

package host_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/testutil"
)

// wasmModule builds a module of one type, n functions () -> () with the
// same body, no exports.
func wasmModule(n int, body []byte) []byte {
	uleb := func(dst []byte, v int) []byte {
		for {
			b := byte(v & 0x7f)
			v >>= 7
			if v == 0 {
				return append(dst, b)
			}
			dst = append(dst, b|0x80)
		}
	}
	section := func(m []byte, id byte, content []byte) []byte {
		return append(uleb(append(m, id), len(content)), content...)
	}
	m := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	m = section(m, 1, []byte{1, 0x60, 0, 0})
	funcs := uleb(nil, n)
	for range n {
		funcs = append(funcs, 0)
	}
	m = section(m, 3, funcs)
	code := uleb(nil, n)
	for range n {
		code = append(uleb(code, len(body)), body...)
	}
	return section(m, 10, code)
}

// nestedBlocks is a function body of depth nested blocks: wazero's compile
// time grows super-linearly with it (issue 13: 240 KB compiled for 55 s).
func nestedBlocks(depth int) []byte {
	b := []byte{0} // no locals
	for range depth {
		b = append(b, 0x02, 0x40) // block (empty type)
	}
	for range depth {
		b = append(b, 0x0b)
	}
	return append(b, 0x0b)
}

func moduleFiles(t *testing.T, dataDir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dataDir, "modules"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// Issue 13 items 7 and 9: a module over the function-count or body-size
// cap is refused before compiling; one that compiles too slowly is cut off
// by the deadline; a refused module leaves no file; a name is re-pointed
// only with Replace; the number of modules is capped. A normal task runs
// afterwards.
func TestModuleCaps(t *testing.T) {
	var dataDir string
	h := testutil.StartHost(t, func(c *host.Config) {
		dataDir = c.DataDir
		// Go guests have about 3,000 functions, the largest body 29 KB.
		c.MaxModuleFunctions = 5000
		c.MaxFunctionBodyBytes = 64 << 10
	})
	c := client.New(h.Addr())
	ctx := ctxFor(t, 2*time.Minute)
	mod := testutil.Register(t, c, limitsPkg) // within the caps
	before := moduleFiles(t, dataDir)

	_, err := c.RegisterModule(ctx, wasmModule(5001, []byte{2, 0, 0x0b}), "")
	wantMessage(t, "a module of 5,001 functions", err, "5001 functions, the limit is 5000")
	_, err = c.RegisterModule(ctx, wasmModule(1, nestedBlocks(40_000)), "")
	wantMessage(t, "a function body of 120 KB", err, "function body of", "the limit is 65536")

	// Refused by the worker (another ABI version): no file left either.
	_, err = c.RegisterModule(ctx, moduleWithABI(2), "")
	wantMessage(t, "a module of ABI version 2", err, "ABI")
	if after := moduleFiles(t, dataDir); len(after) != len(before) {
		t.Fatalf("modules dir after refused uploads: %v, before: %v", after, before)
	}

	// Names: re-pointing needs Replace.
	if _, err := c.RegisterModule(ctx, testutil.Guest(t, limitsPkg), "app"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterModule(ctx, testutil.Guest(t, limitsPkg), "app"); err != nil {
		t.Fatalf("registering the same module under its name again: %v", err)
	}
	other := testutil.Guest(t, guestPkg)
	_, err = c.RegisterModule(ctx, other, "app")
	wantMessage(t, "re-pointing a name without Replace", err, "register with replace")
	if !errors.Is(err, client.ErrExists) {
		t.Fatalf("%v: want already_exists", err)
	}
	var n int
	mustCall(t, c, "app", "alloc_mib", &n, 1) // still the first module
	if _, err := c.RegisterModule(ctx, other, "app", client.Replace()); err != nil {
		t.Fatalf("re-pointing with Replace: %v", err)
	}
	var sum int
	mustCall(t, c, "app", "add", &sum, 1, 2) // the guest package's add
	mustCall(t, c, mod, "alloc_mib", &n, 1)
}

// A module within the size caps that compiles too slowly (300 KB of nested
// blocks: about 10,000 nested blocks compile in 0.36 s here and the time
// grows with the square of the depth, so 100,000 take tens of seconds) is
// cut off by the compile deadline: its worker is killed, the module refused
// and not kept; the host goes on running tasks. The deadline is 10 s, not
// less: the test guest registered first must load and be described within
// it on a loaded machine.
func TestCompileDeadline(t *testing.T) {
	var dataDir string
	h := testutil.StartHost(t, func(c *host.Config) {
		dataDir = c.DataDir
		c.CompileTimeout = 10 * time.Second
	})
	c := client.New(h.Addr())
	ctx := ctxFor(t, 2*time.Minute)
	// Registered first (in the shared compilation cache: quick to load).
	mod := testutil.Register(t, c, limitsPkg)
	before := moduleFiles(t, dataDir)
	_, err := c.RegisterModule(ctx, wasmModule(1, nestedBlocks(100_000)), "")
	wantMessage(t, "a module of deeply nested blocks", err, "longer than 10s", "--compile-timeout")
	if !errors.Is(err, client.ErrInvalidArgument) {
		t.Fatalf("%v: want invalid_argument", err)
	}
	if after := moduleFiles(t, dataDir); len(after) != len(before) {
		t.Fatalf("modules dir after a refused upload: %v, before: %v", after, before)
	}
	var n int
	mustCall(t, c, mod, "alloc_mib", &n, 1)
}

func TestMaxModules(t *testing.T) {
	h := testutil.StartHost(t, func(c *host.Config) { c.MaxModules = 1 })
	c := client.New(h.Addr())
	ctx := ctxFor(t, 2*time.Minute)
	mod := testutil.Register(t, c, limitsPkg)
	testutil.Register(t, c, limitsPkg) // the same module again
	_, err := c.RegisterModule(ctx, testutil.Guest(t, guestPkg), "")
	wantMessage(t, "a second distinct module with MaxModules 1", err, "--max-modules")
	var n int
	mustCall(t, c, mod, "alloc_mib", &n, 1)
}
