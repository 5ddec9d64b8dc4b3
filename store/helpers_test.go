package store

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/rayhost/rayhost/internal/ids"
)

// testLogger returns a logger that reports warnings and errors through t.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}

// openBadger opens a Badger store that is closed when the test ends.
func openBadger(t testing.TB, cfg BadgerConfig) *Badger {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	b, err := OpenBadger(cfg)
	if err != nil {
		t.Fatalf("OpenBadger: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// chunkedConfig is DefaultBadgerConfig(dir) keeping every value in Badger
// (no files): for the tests of chunks and the value log.
func chunkedConfig(dir string) BadgerConfig {
	cfg := DefaultBadgerConfig(dir)
	cfg.FileThreshold = -1
	return cfg
}

// countFiles returns the number of value files of b.
func countFiles(t testing.TB, b *Badger) int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(b.dir, fileDir))
	if errors.Is(err, fs.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func memBadgerConfig() BadgerConfig {
	cfg := DefaultBadgerConfig("")
	cfg.InMemory = true
	return cfg
}

var idCounter atomic.Uint32

// newID returns a fresh ObjectID.
func newID() ids.ObjectID {
	return ids.NewTaskID().Put(idCounter.Add(1))
}

// content returns n pseudo-random bytes determined by seed.
func content(seed uint64, n int) []byte {
	var s [32]byte
	s[0], s[1], s[2], s[3] = byte(seed), byte(seed>>8), byte(seed>>16), byte(seed>>24)
	s[4], s[5], s[6], s[7] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(s).Read(b)
	return b
}
