package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/rayhost/rayhost/internal/ids"
)

// impl is a Store implementation under test.
type impl struct {
	name string
	open func(t testing.TB) Store
}

func impls() []impl {
	return []impl{
		{"memory", func(t testing.TB) Store {
			m := NewMemory()
			t.Cleanup(func() { _ = m.Close() })
			return m
		}},
		{"badger-disk", func(t testing.TB) Store { return openBadger(t, DefaultBadgerConfig(t.TempDir())) }},
		{"badger-mem", func(t testing.TB) Store { return openBadger(t, memBadgerConfig()) }},
	}
}

// chunkSizeOf returns the chunk size of s, or DefaultChunkSize.
func chunkSizeOf(s Store) int {
	if c, ok := s.(interface{ ChunkSize() int }); ok {
		return c.ChunkSize()
	}
	return DefaultChunkSize
}

var conformance = []struct {
	name string
	fn   func(t *testing.T, s Store)
}{
	{"PutGetSmall", testPutGetSmall},
	{"MetaRoundTrip", testMetaRoundTrip},
	{"Sizes", testSizes},
	{"Large", testLarge},
	{"Stat", testStat},
	{"Immutable", testImmutable},
	{"NotFound", testNotFound},
	{"WriterVisibility", testWriterVisibility},
	{"WriterAbort", testWriterAbort},
	{"WriterFinished", testWriterFinished},
	{"SizeMismatch", testSizeMismatch},
	{"Delete", testDelete},
	{"Closed", testClosed},
	{"Canceled", testCanceled},
	{"ZeroID", testZeroID},
	{"ReaderClose", testReaderClose},
	{"Concurrent", testConcurrent},
	{"ConcurrentWritersSameID", testConcurrentWritersSameID},
}

func TestConformance(t *testing.T) {
	for _, im := range impls() {
		t.Run(im.name, func(t *testing.T) {
			for _, tc := range conformance {
				t.Run(tc.name, func(t *testing.T) {
					tc.fn(t, im.open(t))
				})
			}
		})
	}
}

func mustPut(t testing.TB, s Store, id ids.ObjectID, meta Meta, data []byte) {
	t.Helper()
	if err := s.Put(t.Context(), id, meta, data); err != nil {
		t.Fatalf("Put(%s, %d bytes): %v", id, len(data), err)
	}
}

func mustGet(t testing.TB, s Store, id ids.ObjectID, want []byte) Meta {
	t.Helper()
	meta, got, err := s.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%s) = %d bytes, want %d bytes (equal prefix %d)", id, len(got), len(want), commonPrefix(got, want))
	}
	if got == nil {
		t.Fatalf("Get(%s) returned a nil slice", id)
	}
	if meta.Size != int64(len(want)) {
		t.Fatalf("Get(%s) meta.Size = %d, want %d", id, meta.Size, len(want))
	}
	return meta
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// readAllPieces reads r in pieces of n bytes.
func readAllPieces(t testing.TB, r io.Reader, n int) []byte {
	t.Helper()
	var out []byte
	buf := make([]byte, n)
	for {
		k, err := r.Read(buf)
		out = append(out, buf[:k]...)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("Read after %d bytes: %v", len(out), err)
		}
	}
}

func mustOpenRead(t testing.TB, s Store, id ids.ObjectID, want []byte, piece int) {
	t.Helper()
	meta, r, err := s.Open(t.Context(), id)
	if err != nil {
		t.Fatalf("Open(%s): %v", id, err)
	}
	defer r.Close()
	if meta.Size != int64(len(want)) {
		t.Fatalf("Open(%s) meta.Size = %d, want %d", id, meta.Size, len(want))
	}
	got := readAllPieces(t, r, piece)
	if !bytes.Equal(got, want) {
		t.Fatalf("Open(%s) read %d bytes, want %d (equal prefix %d)", id, len(got), len(want), commonPrefix(got, want))
	}
}

// writeAll streams data into a new writer in pieces of piece bytes and
// commits.
func writeAll(t testing.TB, s Store, id ids.ObjectID, meta Meta, data []byte, piece int) error {
	t.Helper()
	w, err := s.Create(t.Context(), id, meta)
	if err != nil {
		t.Fatalf("Create(%s): %v", id, err)
	}
	defer w.Abort()
	for p := data; len(p) > 0; {
		k := min(piece, len(p))
		n, err := w.Write(p[:k])
		if err != nil {
			return err
		}
		if n != k {
			t.Fatalf("Write = %d, want %d", n, k)
		}
		p = p[k:]
	}
	return w.Commit(t.Context())
}

func wantErr(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: err = %v, want %v", what, err, target)
	}
}

func testPutGetSmall(t *testing.T, s Store) {
	task := ids.NewTaskID()
	id := task.Return(0)
	data := []byte(`{"answer":42}`)
	before := time.Now()
	mustPut(t, s, id, Meta{Size: -1, Codec: CodecJSON, Owner: "10.0.0.1:7000", Task: task}, data)
	after := time.Now()
	meta := mustGet(t, s, id, data)
	if meta.Codec != CodecJSON || meta.Owner != "10.0.0.1:7000" || meta.Task != task {
		t.Errorf("meta = %+v", meta)
	}
	if meta.Created.Before(before.Truncate(time.Second)) || meta.Created.After(after) {
		t.Errorf("Created = %v, want between %v and %v", meta.Created, before, after)
	}
	if meta.Created.Location() != time.UTC {
		t.Errorf("Created location = %v, want UTC", meta.Created.Location())
	}
	mustOpenRead(t, s, id, data, 3)
}

func testMetaRoundTrip(t *testing.T, s Store) {
	zone := time.FixedZone("X", 5*3600)
	tests := []struct {
		name string
		meta Meta
	}{
		{"all-fields", Meta{Size: 3, Codec: CodecRaw, Owner: "host-a:1234", Task: ids.NewTaskID(),
			Created: time.Date(2024, 2, 29, 23, 59, 58, 123456789, zone)}},
		{"zero-fields", Meta{Size: 3, Created: time.Unix(1, 0)}},
		{"odd-codec", Meta{Size: 3, Codec: Codec(200), Owner: "ünïcode-owner", Created: time.Date(1960, 1, 1, 0, 0, 0, 1, time.UTC)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, large := range []bool{false, true} {
				id := newID()
				data := []byte("abc")
				meta := tc.meta
				if large {
					data = content(1, 100<<10)
					meta.Size = -1
				}
				mustPut(t, s, id, meta, data)
				got, err := s.Stat(t.Context(), id)
				if err != nil {
					t.Fatal(err)
				}
				want := tc.meta
				want.Size = int64(len(data))
				if !got.Created.Equal(want.Created) {
					t.Errorf("Created = %v, want %v", got.Created, want.Created)
				}
				got.Created, want.Created = time.Time{}, time.Time{}
				if got != want {
					t.Errorf("Stat = %+v, want %+v", got, want)
				}
			}
		})
	}
}

func testSizes(t *testing.T, s Store) {
	chunk := chunkSizeOf(s)
	sizes := []int{0, 1, 100, maxInline - 1, maxInline, maxInline + 1,
		chunk - 1, chunk, chunk + 1, 2 * chunk, 2*chunk + 1,
		valueThreshold - 1, valueThreshold, valueThreshold + 1}
	for _, n := range sizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			data := content(uint64(n), n)
			ways := []struct {
				name  string
				write func(id ids.ObjectID) error
			}{
				{"put", func(id ids.ObjectID) error { return s.Put(t.Context(), id, Meta{Size: int64(n)}, data) }},
				{"writer-known-size", func(id ids.ObjectID) error { return writeAll(t, s, id, Meta{Size: int64(n)}, data, 7777) }},
				{"writer-unknown-size", func(id ids.ObjectID) error { return writeAll(t, s, id, Meta{Size: -1}, data, 1000) }},
				{"writer-one-write", func(id ids.ObjectID) error { return writeAll(t, s, id, Meta{Size: -1}, data, n+1) }},
			}
			for _, way := range ways {
				id := newID()
				if err := way.write(id); err != nil {
					t.Fatalf("%s: %v", way.name, err)
				}
				mustGet(t, s, id, data)
				if n > 256<<10 {
					// iotest.TestReader is slow on large values under -race.
					mustOpenRead(t, s, id, data, 100_003)
					continue
				}
				_, r, err := s.Open(t.Context(), id)
				if err != nil {
					t.Fatal(err)
				}
				if err := iotest.TestReader(r, data); err != nil {
					t.Errorf("%s: TestReader: %v", way.name, err)
				}
				r.Close()
			}
		})
	}
}

func testLarge(t *testing.T, s Store) {
	data := content(7, 5<<20+12345)
	id := newID()
	mustPut(t, s, id, Meta{Size: int64(len(data)), Codec: CodecRaw}, data)
	mustGet(t, s, id, data)
	mustOpenRead(t, s, id, data, 4093)
	mustOpenRead(t, s, id, data, 3<<20)

	id2 := newID()
	if err := writeAll(t, s, id2, Meta{Size: -1}, data, 100_000); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, id2, data)
	mustOpenRead(t, s, id2, data, 1<<20+1)
}

func testStat(t *testing.T, s Store) {
	for _, n := range []int{0, 10, 3 << 20} {
		id := newID()
		data := content(3, n)
		mustPut(t, s, id, Meta{Size: -1, Owner: "o"}, data)
		st, err := s.Stat(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		meta := mustGet(t, s, id, data)
		if st != meta {
			t.Errorf("Stat = %+v, Get meta = %+v", st, meta)
		}
	}
}

func testImmutable(t *testing.T, s Store) {
	for _, n := range []int{5, 2<<20 + 3} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			id := newID()
			first, second := content(1, n), content(2, n+1)
			mustPut(t, s, id, Meta{Size: -1, Owner: "first"}, first)
			if err := s.Put(t.Context(), id, Meta{Size: -1, Owner: "second"}, second); err != nil {
				t.Fatalf("second Put: %v", err)
			}
			if meta := mustGet(t, s, id, first); meta.Owner != "first" {
				t.Errorf("Owner = %q, want first", meta.Owner)
			}
			if err := writeAll(t, s, id, Meta{Size: int64(len(second)), Owner: "third"}, second, 65536); err != nil {
				t.Fatalf("writer on existing id: %v", err)
			}
			if meta := mustGet(t, s, id, first); meta.Owner != "first" {
				t.Errorf("Owner = %q, want first", meta.Owner)
			}
			mustOpenRead(t, s, id, first, 1000)
		})
	}
}

func testNotFound(t *testing.T, s Store) {
	id := newID()
	ctx := t.Context()
	_, _, err := s.Get(ctx, id)
	wantErr(t, "Get", err, ErrNotFound)
	_, err = s.Stat(ctx, id)
	wantErr(t, "Stat", err, ErrNotFound)
	_, _, err = s.Open(ctx, id)
	wantErr(t, "Open", err, ErrNotFound)
	wantErr(t, "Delete", s.Delete(ctx, id), ErrNotFound)
	_, _, err = s.Get(ctx, ids.ObjectID{})
	wantErr(t, "Get zero id", err, ErrNotFound)
}

func testWriterVisibility(t *testing.T, s Store) {
	ctx := t.Context()
	for _, n := range []int{10, 3<<20 + 1} {
		id := newID()
		data := content(4, n)
		w, err := s.Create(ctx, id, Meta{Size: -1, Codec: CodecRaw})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data[:n/2]); err != nil {
			t.Fatal(err)
		}
		_, _, err = s.Get(ctx, id)
		wantErr(t, "Get before commit", err, ErrNotFound)
		if _, err := w.Write(data[n/2:]); err != nil {
			t.Fatal(err)
		}
		_, err = s.Stat(ctx, id)
		wantErr(t, "Stat before commit", err, ErrNotFound)
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if meta := mustGet(t, s, id, data); meta.Codec != CodecRaw {
			t.Errorf("Codec = %v", meta.Codec)
		}
	}
}

func testWriterAbort(t *testing.T, s Store) {
	ctx := t.Context()
	for _, n := range []int{10, 2*chunkSizeOf(s) + chunkSizeOf(s)/2} {
		id := newID()
		data := content(5, n)
		w, err := s.Create(ctx, id, Meta{Size: int64(n)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := w.Abort(); err != nil {
			t.Fatalf("Abort: %v", err)
		}
		if err := w.Abort(); err != nil {
			t.Fatalf("second Abort: %v", err)
		}
		_, _, err = s.Get(ctx, id)
		wantErr(t, "Get after abort", err, ErrNotFound)
		_, err = w.Write(data[:1])
		wantErr(t, "Write after abort", err, ErrAborted)
		wantErr(t, "Commit after abort", w.Commit(ctx), ErrAborted)
		_, _, err = s.Get(ctx, id)
		wantErr(t, "Get after commit of aborted", err, ErrNotFound)

		other := content(6, n)
		mustPut(t, s, id, Meta{Size: -1}, other)
		mustGet(t, s, id, other)
	}
	if b, ok := s.(*Badger); ok {
		b.wmu.Lock()
		n := len(b.writers)
		b.wmu.Unlock()
		if n != 0 {
			t.Errorf("%d writers still registered", n)
		}
	}
}

func testWriterFinished(t *testing.T, s Store) {
	ctx := t.Context()
	id := newID()
	w, err := s.Create(ctx, id, Meta{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = w.Write([]byte("y"))
	wantErr(t, "Write after commit", err, ErrAborted)
	wantErr(t, "Commit after commit", w.Commit(ctx), ErrAborted)
	if err := w.Abort(); err != nil {
		t.Errorf("Abort after commit: %v", err)
	}
	mustGet(t, s, id, []byte("x"))
}

func testSizeMismatch(t *testing.T, s Store) {
	ctx := t.Context()
	chunk := chunkSizeOf(s)
	tests := []struct {
		name     string
		declared int64
		write    int
	}{
		{"short-small", 10, 5},
		{"short-empty", 1, 0},
		{"short-large", int64(3 * chunk), 2*chunk + 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := newID()
			err := writeAll(t, s, id, Meta{Size: tc.declared}, content(8, tc.write), 50_000)
			wantErr(t, "Commit", err, ErrSizeMismatch)
			_, _, err = s.Get(ctx, id)
			wantErr(t, "Get", err, ErrNotFound)
		})
	}
	t.Run("long", func(t *testing.T) {
		id := newID()
		w, err := s.Create(ctx, id, Meta{Size: 5})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Abort()
		if _, err := w.Write([]byte("abc")); err != nil {
			t.Fatal(err)
		}
		n, err := w.Write([]byte("def"))
		wantErr(t, "Write past size", err, ErrSizeMismatch)
		if n != 0 {
			t.Errorf("Write past size = %d, want 0", n)
		}
		wantErr(t, "Commit", w.Commit(ctx), ErrSizeMismatch)
		_, _, err = s.Get(ctx, id)
		wantErr(t, "Get", err, ErrNotFound)
	})
	t.Run("put", func(t *testing.T) {
		id := newID()
		wantErr(t, "Put", s.Put(ctx, id, Meta{Size: 3}, []byte("abcd")), ErrSizeMismatch)
		_, _, err := s.Get(ctx, id)
		wantErr(t, "Get", err, ErrNotFound)
	})
}

func testDelete(t *testing.T, s Store) {
	ctx := t.Context()
	for _, n := range []int{0, 10, 3<<20 + 5} {
		id := newID()
		mustPut(t, s, id, Meta{Size: -1}, content(9, n))
		if err := s.Delete(ctx, id); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		_, _, err := s.Get(ctx, id)
		wantErr(t, "Get after delete", err, ErrNotFound)
		wantErr(t, "second Delete", s.Delete(ctx, id), ErrNotFound)
		again := content(10, n+1)
		mustPut(t, s, id, Meta{Size: -1}, again)
		mustGet(t, s, id, again)
		mustOpenRead(t, s, id, again, 10_000)
	}
	if b, ok := s.(*Badger); ok {
		// Only the chunks of live objects remain.
		want := (3<<20 + 6 + b.ChunkSize() - 1) / b.ChunkSize()
		if n := countChunks(t, b); n != want {
			t.Errorf("%d chunk keys, want %d", n, want)
		}
	}
}

func testClosed(t *testing.T, s Store) {
	ctx := t.Context()
	large := newID()
	data := content(11, 3*chunkSizeOf(s))
	mustPut(t, s, large, Meta{Size: -1}, data)
	_, r, err := s.Open(ctx, large)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	w, err := s.Create(ctx, newID(), Meta{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	id := newID()
	wantErr(t, "Put", s.Put(ctx, id, Meta{Size: -1}, []byte("x")), ErrClosed)
	_, _, err = s.Get(ctx, large)
	wantErr(t, "Get", err, ErrClosed)
	_, err = s.Stat(ctx, large)
	wantErr(t, "Stat", err, ErrClosed)
	_, _, err = s.Open(ctx, large)
	wantErr(t, "Open", err, ErrClosed)
	_, err = s.Create(ctx, id, Meta{Size: -1})
	wantErr(t, "Create", err, ErrClosed)
	wantErr(t, "Delete", s.Delete(ctx, large), ErrClosed)
	_, err = w.Write([]byte("x"))
	wantErr(t, "Writer.Write", err, ErrClosed)
	wantErr(t, "Writer.Commit", w.Commit(ctx), ErrClosed)
	if err := w.Abort(); err != nil {
		t.Errorf("Writer.Abort: %v", err)
	}
	_, err = io.ReadAll(r)
	wantErr(t, "Read", err, ErrClosed)
	if err := r.Close(); err != nil {
		t.Errorf("reader Close: %v", err)
	}
}

func testCanceled(t *testing.T, s Store) {
	ctx, cancel := context.WithCancel(t.Context())
	id := newID()
	data := content(12, 2<<20)
	mustPut(t, s, id, Meta{Size: -1}, data)
	w, err := s.Create(ctx, newID(), Meta{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	cancel()

	other := newID()
	wantErr(t, "Put", s.Put(ctx, other, Meta{Size: -1}, data), context.Canceled)
	_, _, err = s.Get(ctx, id)
	wantErr(t, "Get", err, context.Canceled)
	_, err = s.Stat(ctx, id)
	wantErr(t, "Stat", err, context.Canceled)
	_, _, err = s.Open(ctx, id)
	wantErr(t, "Open", err, context.Canceled)
	_, err = s.Create(ctx, other, Meta{Size: -1})
	wantErr(t, "Create", err, context.Canceled)
	wantErr(t, "Delete", s.Delete(ctx, id), context.Canceled)
	wantErr(t, "Commit", w.Commit(ctx), context.Canceled)

	_, _, err = s.Get(t.Context(), other)
	wantErr(t, "Get of canceled put", err, ErrNotFound)
	mustGet(t, s, id, data)
}

func testZeroID(t *testing.T, s Store) {
	wantErr(t, "Put", s.Put(t.Context(), ids.ObjectID{}, Meta{Size: -1}, []byte("x")), ids.ErrInvalidID)
	_, err := s.Create(t.Context(), ids.ObjectID{}, Meta{Size: -1})
	wantErr(t, "Create", err, ids.ErrInvalidID)
}

func testReaderClose(t *testing.T, s Store) {
	for _, n := range []int{5, 2 * chunkSizeOf(s)} {
		id := newID()
		mustPut(t, s, id, Meta{Size: -1}, content(13, n))
		_, r, err := s.Open(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Read(make([]byte, 1)); err == nil {
			t.Errorf("Read after Close succeeded")
		}
	}
}

// testConcurrent hammers the store from several goroutines putting and
// reading distinct ids and racing on shared ones.
func testConcurrent(t *testing.T, s Store) {
	const (
		goroutines = 8
		iterations = 60
		shared     = 5
	)
	ctx := t.Context()
	sharedIDs := make([]ids.ObjectID, shared)
	for i := range sharedIDs {
		sharedIDs[i] = newID()
	}
	// sharedValue is what goroutine g puts under shared id i; its first
	// byte names g so a reader can tell which write won.
	sharedValue := func(i, g int) []byte {
		n := 100
		if i%2 == 1 {
			n = 70_000 + i
		}
		v := content(uint64(1000*i+g), n)
		v[0] = byte(g)
		return v
	}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			err := func() error {
				for it := range iterations {
					id := newID()
					n := (it * 997) % 3000
					if it%10 == 0 {
						n = 100_000 + it
					}
					data := content(uint64(g*iterations+it), n)
					if it%3 == 0 {
						w, err := s.Create(ctx, id, Meta{Size: -1})
						if err != nil {
							return err
						}
						if _, err := w.Write(data); err != nil {
							return err
						}
						if err := w.Commit(ctx); err != nil {
							return err
						}
					} else if err := s.Put(ctx, id, Meta{Size: int64(n)}, data); err != nil {
						return err
					}
					_, got, err := s.Get(ctx, id)
					if err != nil {
						return err
					}
					if !bytes.Equal(got, data) {
						return fmt.Errorf("distinct id %s: wrong value", id)
					}
					if it%4 == 0 {
						if err := s.Delete(ctx, id); err != nil {
							return err
						}
					}

					i := it % shared
					if err := s.Put(ctx, sharedIDs[i], Meta{Size: -1}, sharedValue(i, g)); err != nil {
						return err
					}
					_, got, err = s.Get(ctx, sharedIDs[i])
					if err != nil {
						return err
					}
					if len(got) == 0 || int(got[0]) >= goroutines || !bytes.Equal(got, sharedValue(i, int(got[0]))) {
						return fmt.Errorf("shared id %d: value is no goroutine's", i)
					}
				}
				return nil
			}()
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// testConcurrentWritersSameID races streaming writers of one id: all
// commits succeed and exactly one value wins, unmixed.
func testConcurrentWritersSameID(t *testing.T, s Store) {
	const writers = 4
	ctx := t.Context()
	chunk := chunkSizeOf(s)
	id := newID()
	values := make([][]byte, writers)
	for i := range values {
		values[i] = content(uint64(500+i), 2*chunk+chunk/2)
	}
	ws := make([]Writer, writers)
	for i := range ws {
		w, err := s.Create(ctx, id, Meta{Size: -1})
		if err != nil {
			t.Fatal(err)
		}
		ws[i] = w
	}
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i, w := range ws {
		wg.Go(func() {
			for p := values[i]; len(p) > 0; {
				k := min(len(p), 10_000)
				if _, err := w.Write(p[:k]); err != nil {
					errs[i] = err
					return
				}
				p = p[k:]
			}
			errs[i] = w.Commit(ctx)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	_, got, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	winners := 0
	for _, v := range values {
		if bytes.Equal(got, v) {
			winners++
		}
	}
	if winners != 1 {
		t.Fatalf("stored value matches %d writers, want 1", winners)
	}
	if b, ok := s.(*Badger); ok {
		// The losers' chunks are gone.
		if n, want := countChunks(t, b), 3; n != want {
			t.Errorf("%d chunk keys, want %d", n, want)
		}
	}
}

func TestCodecString(t *testing.T) {
	tests := []struct {
		c    Codec
		want string
	}{
		{CodecJSON, "json"},
		{CodecRaw, "raw"},
		{Codec(2), "codec(2)"},
		{Codec(255), "codec(255)"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.c.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMemoryLen(t *testing.T) {
	m := NewMemory()
	mustPut(t, m, newID(), Meta{Size: -1}, nil)
	mustPut(t, m, newID(), Meta{Size: -1}, []byte("a"))
	if n := m.Len(); n != 2 {
		t.Errorf("Len = %d, want 2", n)
	}
}
