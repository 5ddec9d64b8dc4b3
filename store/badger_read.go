// This file holds the Badger store's reads: records and chunks, Get, Stat,
// Open and the chunked reader.

package store

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/dgraph-io/badger/v4"

	"github.com/rayhost/rayhost/internal/ids"
)

// getRecord reads the record of id in txn. If withData, inline data is
// copied into the result; otherwise the result has no data.
func getRecord(txn *badger.Txn, id ids.ObjectID, withData bool) (record, error) {
	item, err := txn.Get(metaKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return record{}, notFound(id)
	}
	if err != nil {
		return record{}, err
	}
	var rec record
	err = item.Value(func(v []byte) error {
		var err error
		rec, err = decodeRecord(v)
		if err != nil {
			return fmt.Errorf("object %s: %w", id, err)
		}
		if withData {
			rec.data = append([]byte(nil), rec.data...)
			if rec.data == nil {
				rec.data = []byte{}
			}
		} else {
			rec.data = nil
		}
		return nil
	})
	return rec, err
}

// readChunk calls fn with chunk i of rec, checking its length. The slice is
// valid only during fn.
func readChunk(txn *badger.Txn, id ids.ObjectID, rec *record, i uint32, fn func([]byte)) error {
	item, err := txn.Get(chunkKey(id, rec.gen, i))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("%w: object %s: chunk %d of %d missing", ErrCorrupt, id, i, rec.chunks())
	}
	if err != nil {
		return err
	}
	return item.Value(func(v []byte) error {
		if want := rec.chunkLen(i); int64(len(v)) != want {
			return fmt.Errorf("%w: object %s: chunk %d has %d bytes, want %d", ErrCorrupt, id, i, len(v), want)
		}
		fn(v)
		return nil
	})
}

// Get implements Store.
func (b *Badger) Get(ctx context.Context, id ids.ObjectID) (Meta, []byte, error) {
	if err := ctxErr(ctx, "get", id); err != nil {
		return Meta{}, nil, err
	}
	if err := b.acquire(); err != nil {
		return Meta{}, nil, err
	}
	defer b.release()
	var rec record
	err := b.db.View(func(txn *badger.Txn) error {
		var err error
		rec, err = getRecord(txn, id, true)
		if err != nil || rec.inline || rec.file {
			return err
		}
		data := make([]byte, rec.meta.Size)
		for i := range rec.chunks() {
			if err := ctx.Err(); err != nil {
				return err
			}
			off := int64(i) * rec.chunkSize
			if err := readChunk(txn, id, &rec, i, func(v []byte) { copy(data[off:], v) }); err != nil {
				return err
			}
		}
		rec.data = data
		return nil
	})
	if err == nil && rec.file {
		rec.data, err = b.readFile(id, &rec)
	}
	if err != nil {
		return Meta{}, nil, wrap("get", id, err)
	}
	return rec.meta, rec.data, nil
}

// Stat implements Store.
func (b *Badger) Stat(ctx context.Context, id ids.ObjectID) (Meta, error) {
	if err := ctxErr(ctx, "stat", id); err != nil {
		return Meta{}, err
	}
	if err := b.acquire(); err != nil {
		return Meta{}, err
	}
	defer b.release()
	var rec record
	err := b.db.View(func(txn *badger.Txn) error {
		var err error
		rec, err = getRecord(txn, id, false)
		return err
	})
	if err != nil {
		return Meta{}, wrap("stat", id, err)
	}
	return rec.meta, nil
}

// Open implements Store. Each Read of a chunked object that needs a new
// chunk reads it in its own transaction, so at most one chunk is held.
func (b *Badger) Open(ctx context.Context, id ids.ObjectID) (Meta, io.ReadCloser, error) {
	if err := ctxErr(ctx, "open", id); err != nil {
		return Meta{}, nil, err
	}
	if err := b.acquire(); err != nil {
		return Meta{}, nil, err
	}
	defer b.release()
	var rec record
	err := b.db.View(func(txn *badger.Txn) error {
		var err error
		rec, err = getRecord(txn, id, true)
		return err
	})
	if err != nil {
		return Meta{}, nil, wrap("open", id, err)
	}
	if rec.file {
		f, err := b.openFile(id, &rec)
		if err != nil {
			return Meta{}, nil, wrap("open", id, err)
		}
		return rec.meta, &fileReader{b: b, id: id, f: f, want: rec.meta.Size, sum: rec.sum}, nil
	}
	r := &badgerReader{b: b, id: id, rec: rec}
	if rec.inline {
		r.cur = rec.data
	}
	return rec.meta, r, nil
}

type badgerReader struct {
	b      *Badger
	id     ids.ObjectID
	rec    record
	next   uint32 // next chunk to load
	cur    []byte // unread part of the current chunk (or inline value)
	buf    []byte // reused chunk buffer
	closed bool
}

func (r *badgerReader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, ErrClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := r.b.acquire(); err != nil {
		return 0, err
	}
	defer r.b.release()
	if len(r.cur) == 0 {
		if r.rec.inline || r.next >= r.rec.chunks() {
			return 0, io.EOF
		}
		err := r.b.db.View(func(txn *badger.Txn) error {
			return readChunk(txn, r.id, &r.rec, r.next, func(v []byte) {
				if r.buf == nil && len(v) <= r.b.chunkSize {
					r.buf = r.b.getBuf()
				}
				r.buf = append(r.buf[:0], v...)
			})
		})
		if errors.Is(err, ErrCorrupt) {
			// The object may have been deleted (and put again) since Open.
			err = r.b.goneWhileReading(r.id, &r.rec, err)
		}
		if err != nil {
			return 0, wrap("read", r.id, err)
		}
		r.next++
		r.cur = r.buf
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

func (r *badgerReader) Close() error {
	if buf := r.buf; !r.closed && buf != nil {
		r.b.putBuf(&buf)
	}
	r.closed = true
	r.cur, r.buf = nil, nil
	return nil
}

func getRecordView(db *badger.DB, id ids.ObjectID) (record, error) {
	var rec record
	err := db.View(func(txn *badger.Txn) error {
		var err error
		rec, err = getRecord(txn, id, false)
		return err
	})
	return rec, err
}

// exists reports whether id has a record.
func (b *Badger) exists(id ids.ObjectID) (bool, error) {
	_, err := getRecordView(b.db, id)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	default:
		return false, err
	}
}
