// This file holds the conformance cases of streaming writes and reads:
// when a written object becomes visible, Abort, a finished writer, sizes
// that do not match the Meta, and closing a reader.

package store

import (
	"testing"
)

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
