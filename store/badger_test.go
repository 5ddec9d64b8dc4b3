package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/rayhost/rayhost/internal/ids"
)

// countChunks returns the number of chunk keys in b.
func countChunks(t testing.TB, b *Badger) int {
	t.Helper()
	n := 0
	err := b.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte{prefixChunk}
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("counting chunks: %v", err)
	}
	return n
}

func TestBadgerConfigValidation(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name   string
		modify func(*BadgerConfig)
	}{
		{"no-dir", func(c *BadgerConfig) { c.Dir = "" }},
		{"dir-in-memory", func(c *BadgerConfig) { c.InMemory = true }},
		{"zero-chunk", func(c *BadgerConfig) { c.ChunkSize = 0 }},
		{"negative-chunk", func(c *BadgerConfig) { c.ChunkSize = -1 }},
		{"huge-chunk", func(c *BadgerConfig) { c.ChunkSize = MaxChunkSize + 1 }},
		{"zero-gc-interval", func(c *BadgerConfig) { c.GCInterval = 0 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultBadgerConfig(dir)
			tc.modify(&cfg)
			b, err := OpenBadger(cfg)
			if err == nil {
				_ = b.Close()
			}
			wantErr(t, "OpenBadger", err, ErrInvalidConfig)
		})
	}
}

func TestBadgerConfigAccepted(t *testing.T) {
	tests := []struct {
		name      string
		cfg       func(dir string) BadgerConfig
		wantChunk int
	}{
		{"default", DefaultBadgerConfig, DefaultChunkSize},
		{"gc-disabled", func(dir string) BadgerConfig {
			c := DefaultBadgerConfig(dir)
			c.GCInterval = -1
			return c
		}, DefaultChunkSize},
		{"max-chunk", func(dir string) BadgerConfig {
			c := DefaultBadgerConfig(dir)
			c.ChunkSize = MaxChunkSize
			return c
		}, MaxChunkSize},
		{"sync-writes", func(dir string) BadgerConfig {
			c := DefaultBadgerConfig(dir)
			c.SyncWrites = true
			return c
		}, DefaultChunkSize},
		{"in-memory", func(string) BadgerConfig { return memBadgerConfig() }, MaxInMemoryChunkSize},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := openBadger(t, tc.cfg(t.TempDir()))
			if got := b.ChunkSize(); got != tc.wantChunk {
				t.Errorf("ChunkSize() = %d, want %d", got, tc.wantChunk)
			}
			data := content(1, 2*tc.wantChunk/3+maxInline)
			id := newID()
			mustPut(t, b, id, Meta{Size: -1}, data)
			mustGet(t, b, id, data)
		})
	}
}

func TestBadgerDirLocked(t *testing.T) {
	dir := t.TempDir()
	openBadger(t, DefaultBadgerConfig(dir))
	b, err := OpenBadger(DefaultBadgerConfig(dir))
	if err == nil {
		_ = b.Close()
		t.Fatal("second OpenBadger of one dir succeeded")
	}
}

// TestBadgerInMemoryThreshold writes values of exactly Badger's
// ValueThreshold and exactly the chunk size in in-memory mode, where a
// value of ValueThreshold bytes would crash the process.
func TestBadgerInMemoryThreshold(t *testing.T) {
	tests := []struct {
		chunk, want int
	}{
		{DefaultChunkSize, MaxInMemoryChunkSize},
		{valueThreshold, MaxInMemoryChunkSize},
		{valueThreshold - 1, MaxInMemoryChunkSize},
		{MaxInMemoryChunkSize, MaxInMemoryChunkSize},
		{32 << 10, 32 << 10},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.chunk), func(t *testing.T) {
			cfg := memBadgerConfig()
			cfg.ChunkSize = tc.chunk
			b := openBadger(t, cfg)
			if got := b.ChunkSize(); got != tc.want {
				t.Fatalf("ChunkSize() = %d, want %d", got, tc.want)
			}
			for _, n := range []int{valueThreshold - 1, valueThreshold, valueThreshold + 1, tc.want, tc.want + 1, tc.chunk, 2 * tc.want} {
				data := content(uint64(n), n)
				id := newID()
				mustPut(t, b, id, Meta{Size: -1}, data)
				mustGet(t, b, id, data)
				id = newID()
				if err := writeAll(t, b, id, Meta{Size: -1}, data, n); err != nil {
					t.Fatalf("writer of %d bytes: %v", n, err)
				}
				mustOpenRead(t, b, id, data, 1<<20)
			}
		})
	}
}

func TestBadgerReopen(t *testing.T) {
	dir := t.TempDir()
	cfg := chunkedConfig(dir)
	cfg.ChunkSize = 256 << 10
	type object struct {
		id   ids.ObjectID
		meta Meta
		data []byte
	}
	task := ids.NewTaskID()
	objects := []object{
		{task.Return(0), Meta{Codec: CodecJSON, Owner: "a:1", Task: task}, []byte(`[1,2,3]`)},
		{task.Return(1), Meta{Codec: CodecRaw, Owner: "a:1", Task: task}, nil},
		{task.Put(0), Meta{Codec: CodecRaw}, content(1, 3<<20+17)},
		{task.Put(1), Meta{Codec: CodecRaw}, content(2, 100<<10)},
	}
	deleted := task.Put(2)

	b, err := OpenBadger(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range objects {
		o.meta.Size = -1
		if i%2 == 0 {
			mustPut(t, b, o.id, o.meta, o.data)
		} else if err := writeAll(t, b, o.id, o.meta, o.data, 30_000); err != nil {
			t.Fatal(err)
		}
		objects[i].meta, err = b.Stat(t.Context(), o.id)
		if err != nil {
			t.Fatal(err)
		}
	}
	mustPut(t, b, deleted, Meta{Size: -1}, content(3, 1<<20))
	if err := b.Delete(t.Context(), deleted); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopen with another chunk size: old objects keep theirs.
	cfg.ChunkSize = DefaultChunkSize
	b = openBadger(t, cfg)
	for _, o := range objects {
		meta := mustGet(t, b, o.id, o.data)
		if meta != o.meta {
			t.Errorf("after reopen %s: meta = %+v, want %+v", o.id, meta, o.meta)
		}
		mustOpenRead(t, b, o.id, o.data, 50_000)
	}
	_, _, err = b.Get(t.Context(), deleted)
	wantErr(t, "Get of deleted object", err, ErrNotFound)
	<-b.swept
	if n, want := countChunks(t, b), 13+1; n != want {
		t.Errorf("%d chunk keys after reopen, want %d", n, want)
	}
}

func TestBadgerSweep(t *testing.T) {
	dir := t.TempDir()
	cfg := chunkedConfig(dir)
	cfg.ChunkSize = 64 << 10

	b, err := OpenBadger(cfg)
	if err != nil {
		t.Fatal(err)
	}
	live := newID()
	liveData := content(1, 200<<10) // 4 chunks
	mustPut(t, b, live, Meta{Size: -1}, liveData)
	// Orphans as a crash would leave them: chunks of an uncommitted write,
	// and chunks of a second write of the live id.
	orphan := newID()
	for _, id := range []ids.ObjectID{orphan, live} {
		gen, err := b.seq.Next()
		if err != nil {
			t.Fatal(err)
		}
		err = b.db.Update(func(txn *badger.Txn) error {
			for i := range uint32(3) {
				if err := txn.Set(chunkKey(id, gen, i), []byte("junk")); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := countChunks(t, b); n != 4+6 {
		t.Fatalf("%d chunk keys before sweep, want 10", n)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openBadger(t, cfg)
	// Writes during the sweep are left alone.
	fresh := newID()
	freshData := content(2, 300<<10)
	mustPut(t, b, fresh, Meta{Size: -1}, freshData)
	<-b.swept
	if n := countChunks(t, b); n != 4+5 {
		t.Errorf("%d chunk keys after sweep, want 9", n)
	}
	mustGet(t, b, live, liveData)
	mustGet(t, b, fresh, freshData)
	_, _, err = b.Get(t.Context(), orphan)
	wantErr(t, "Get of orphan", err, ErrNotFound)
}

func TestBadgerCorruptChunk(t *testing.T) {
	b := openBadger(t, chunkedConfig(t.TempDir()))
	id := newID()
	mustPut(t, b, id, Meta{Size: -1}, content(1, 3<<20))
	rec, err := getRecordView(b.db, id)
	if err != nil {
		t.Fatal(err)
	}
	err = b.db.Update(func(txn *badger.Txn) error { return txn.Set(chunkKey(id, rec.gen, 1), []byte("short")) })
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = b.Get(t.Context(), id)
	wantErr(t, "Get", err, ErrCorrupt)
	_, r, err := b.Open(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 2<<20)
	_, err = r.Read(buf)
	if err != nil {
		t.Fatalf("first chunk: %v", err)
	}
	_, err = r.Read(buf)
	wantErr(t, "Read of short chunk", err, ErrCorrupt)
}

func TestBadgerDeleteWhileReading(t *testing.T) {
	b := openBadger(t, chunkedConfig(t.TempDir()))
	id := newID()
	mustPut(t, b, id, Meta{Size: -1}, content(1, 3<<20))
	_, r, err := b.Open(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	mustPut(t, b, id, Meta{Size: -1}, content(2, 3<<20))
	buf := make([]byte, 2<<20)
	for err == nil {
		_, err = r.Read(buf)
	}
	wantErr(t, "Read after delete", err, ErrNotFound)
}

func TestBadgerCloseAbortsWriters(t *testing.T) {
	dir := t.TempDir()
	cfg := chunkedConfig(dir)
	b, err := OpenBadger(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w, err := b.Create(t.Context(), newID(), Meta{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(content(1, 20<<20)); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openBadger(t, cfg)
	if n := countChunks(t, b); n != 0 {
		t.Errorf("%d chunk keys left by an aborted writer", n)
	}
}

// TestBadgerCloseConcurrent closes the store while goroutines use it: every
// operation either works or reports ErrClosed.
func TestBadgerCloseConcurrent(t *testing.T) {
	b := openBadger(t, DefaultBadgerConfig(t.TempDir()))
	ctx := t.Context()
	var wg, working sync.WaitGroup
	working.Add(4)
	for g := range 4 {
		wg.Go(func() {
			once := sync.OnceFunc(working.Done)
			defer once() // a goroutine that fails before its first round
			for i := 0; ; i++ {
				if i == 1 {
					once() // one write and read done: Close now lands mid-traffic
				}
				data := content(uint64(g), 1000+i*5000)
				id := newID()
				if err := writeAllErr(ctx, b, id, data); err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Errorf("writer: %v", err)
					}
					return
				}
				if _, _, err := b.Get(ctx, id); err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Errorf("Get: %v", err)
					}
					return
				}
			}
		})
	}
	working.Wait()
	if err := b.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	wg.Wait()
}

func writeAllErr(ctx context.Context, s Store, id ids.ObjectID, data []byte) error {
	w, err := s.Create(ctx, id, Meta{Size: -1})
	if err != nil {
		return err
	}
	defer w.Abort()
	for p := data; len(p) > 0; {
		k := min(len(p), 3000)
		if _, err := w.Write(p[:k]); err != nil {
			return err
		}
		p = p[k:]
	}
	return w.Commit(ctx)
}

type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func TestBadgerLogger(t *testing.T) {
	tests := []struct {
		name  string
		log   func(badgerLogger)
		level slog.Level
	}{
		{"error", func(l badgerLogger) { l.Errorf("bad %d\n", 1) }, slog.LevelError},
		{"warning", func(l badgerLogger) { l.Warningf("careful %d\n", 1) }, slog.LevelWarn},
		{"info", func(l badgerLogger) { l.Infof("note %d\n", 1) }, slog.LevelDebug},
		{"debug", func(l badgerLogger) { l.Debugf("detail %d\n", 1) }, slog.LevelDebug},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &recordHandler{}
			tc.log(newBadgerLogger(slog.New(h)))
			if len(h.records) != 1 {
				t.Fatalf("%d records, want 1", len(h.records))
			}
			r := h.records[0]
			if r.Level != tc.level {
				t.Errorf("level = %v, want %v", r.Level, tc.level)
			}
			if r.Message[len(r.Message)-1] != '1' {
				t.Errorf("message %q not trimmed", r.Message)
			}
		})
	}
	t.Run("filtered", func(t *testing.T) {
		var calls int
		l := newBadgerLogger(slog.New(slog.NewTextHandler(countWriter{&calls}, &slog.HandlerOptions{Level: slog.LevelInfo})))
		l.Infof("x")
		l.Debugf("x")
		if calls != 0 {
			t.Errorf("info/debug written at info level")
		}
		l.Warningf("x")
		if calls != 1 {
			t.Errorf("warning not written")
		}
	})
}

type countWriter struct{ n *int }

func (w countWriter) Write(p []byte) (int, error) {
	*w.n++
	return len(p), nil
}

func TestChunkKeyLayout(t *testing.T) {
	id := newID()
	k := chunkKey(id, 0x0102030405060708, 0x0a0b0c0d)
	want := append(append([]byte{'c'}, id[:]...), 1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b, 0x0c, 0x0d)
	if string(k) != string(want) {
		t.Fatalf("chunkKey = %x, want %x", k, want)
	}
	gotID, gen, i, ok := parseChunkKey(k)
	if !ok || gotID != id || gen != 0x0102030405060708 || i != 0x0a0b0c0d {
		t.Errorf("parseChunkKey = %s %x %x %v", gotID, gen, i, ok)
	}
	if mk := metaKey(id); mk[0] != 'm' || string(mk[1:]) != string(id[:]) {
		t.Errorf("metaKey = %x", mk)
	}
	if _, _, _, ok := parseChunkKey(k[:len(k)-1]); ok {
		t.Errorf("parseChunkKey accepted a short key")
	}
}

// TestBadgerHeap opens several stores at once and logs the Go heap each
// costs: a figure, not checked (BenchmarkOpenBadger reports it).
func TestBadgerHeap(t *testing.T) {
	const stores = 3
	// Warm up package-level state (pools, caches) first.
	openBadger(t, DefaultBadgerConfig(t.TempDir())).Close()

	dirs := make([]string, stores)
	for i := range dirs {
		dirs[i] = t.TempDir()
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, dir := range dirs {
		openBadger(t, DefaultBadgerConfig(dir))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / stores
	t.Logf("Go heap per open Badger store: %.1f MiB", float64(per)/(1<<20))
}
