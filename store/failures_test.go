// This file holds the conformance cases of refused operations: an unknown
// object, a closed store, a cancelled context, and the zero ObjectID.

package store

import (
	"context"
	"io"
	"testing"

	"github.com/rayhost/rayhost/internal/ids"
)

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
