package worker

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/rayhost/rayhost/internal/ids"
)

// abiModule is a minimal module with the rayhost exports; v makes distinct
// modules.
func abiModule(v byte) []byte {
	section := func(id byte, body ...byte) []byte { return append([]byte{id, byte(len(body))}, body...) }
	name := func(s string) []byte { return append([]byte{byte(len(s))}, s...) }
	m := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	m = append(m, section(1, 2, 0x60, 0, 1, 0x7f, 0x60, 1, 0x7f, 1, 0x7f)...)
	m = append(m, section(3, 2, 0, 1)...)
	exports := []byte{2}
	exports = append(append(exports, name("rayhost_abi_version")...), 0, 0)
	exports = append(append(exports, name("rayhost_invoke")...), 0, 1)
	m = append(m, section(7, exports...)...)
	return append(m, section(10, 2, 4, 0, 0x41, v, 0x0b, 4, 0, 0x41, 0, 0x0b)...)
}

// A worker keeps its MaxModules most recently used modules and closes the
// compiled code of the others, once no caller is between module and unuse.
func TestModuleLRU(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	paths := map[string]string{}
	for i, n := range []string{"a", "b", "c"} {
		p := filepath.Join(dir, n+".wasm")
		if err := os.WriteFile(p, abiModule(byte(i+1)), 0o644); err != nil {
			t.Fatal(err)
		}
		paths[n] = p
	}
	w := &Worker{
		cfg: Config{MaxModules: 2}, base: wazero.NewRuntimeConfigCompiler(), log: slog.New(slog.DiscardHandler),
		runtimes: map[uint32]wazero.Runtime{}, modules: map[string]*module{}, actors: map[ids.TaskID]*instance{},
		pending: map[uint64]chan reply{}, early: map[ids.TaskID]bool{}, closed: make(chan struct{}),
	}
	defer func() {
		for _, rt := range w.runtimes {
			rt.Close(ctx)
		}
	}()
	use := func(n string) *module {
		t.Helper()
		m, err := w.module(ctx, paths[n], 16)
		if err != nil {
			t.Fatalf("module %s: %v", n, err)
		}
		return m
	}
	a := use("a")
	w.unuse(a)
	b := use("b") // held: in use while evicted
	w.unuse(use("a"))
	c := use("c") // evicts b, the least recently used
	w.unuse(c)
	if _, ok := w.modules["16:"+paths["b"]]; ok {
		t.Fatal("b was kept; want it evicted as least recently used")
	}
	if _, ok := w.modules["16:"+paths["a"]]; !ok {
		t.Fatal("a was evicted though used more recently than b")
	}
	if b.compiled == nil {
		t.Fatal("b's compiled code was closed while in use")
	}
	w.unuse(b)
	if b.compiled != nil {
		t.Fatal("b's compiled code was not closed after its last use")
	}
	if a.compiled == nil || c.compiled == nil {
		t.Fatal("a kept module lost its compiled code")
	}
}
