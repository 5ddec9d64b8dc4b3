package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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
		{"badger-chunks", func(t testing.TB) Store { return openBadger(t, chunkedConfig(t.TempDir())) }},
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
		// Only the chunks (or the file) of live objects remain.
		want, files := (3<<20+6+b.ChunkSize()-1)/b.ChunkSize(), 0
		if b.asFile(3<<20 + 6) {
			want, files = 0, 1
		}
		if n := countChunks(t, b); n != want {
			t.Errorf("%d chunk keys, want %d", n, want)
		}
		if n := countFiles(t, b); n != files {
			t.Errorf("%d value files, want %d", n, files)
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
