// This file holds the Badger store's streaming writer: Create and
// badgerWriter, which writes an object chunk by chunk until Commit or
// Abort.

package store

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rayhost/rayhost/internal/ids"
)

// Create implements Store.
func (b *Badger) Create(ctx context.Context, id ids.ObjectID, meta Meta) (Writer, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if err := ctxErr(ctx, "create", id); err != nil {
		return nil, err
	}
	if err := b.acquire(); err != nil {
		return nil, err
	}
	defer b.release()
	exists, err := b.exists(id)
	if err != nil {
		return nil, wrap("create", id, err)
	}
	w := &badgerWriter{b: b, id: id, meta: meta, discardAll: exists}
	b.wmu.Lock()
	b.writers[w] = struct{}{}
	b.wmu.Unlock()
	return w, nil
}

func (b *Badger) unregister(w *badgerWriter) {
	b.wmu.Lock()
	delete(b.writers, w)
	b.wmu.Unlock()
}

// badgerWriter buffers one chunk at a time and hands full chunks to a sink.
type badgerWriter struct {
	b          *Badger
	id         ids.ObjectID
	meta       Meta
	discardAll bool // the object existed at Create: count bytes only

	mu      sync.Mutex // against Close aborting the writer
	done    bool
	written int64
	buf     []byte // the current, partial chunk
	s       *sink  // nil until the first chunk is added
}

func (w *badgerWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.b.acquire(); err != nil {
		return 0, err
	}
	defer w.b.release()
	if w.done {
		return 0, ErrAborted
	}
	if n := w.written + int64(len(p)); w.meta.Size >= 0 && n > w.meta.Size {
		return 0, sizeMismatch(w.id, w.meta.Size, n)
	}
	if w.discardAll {
		w.written += int64(len(p))
		return len(p), nil
	}
	chunk := w.b.chunkSize
	total := len(p)
	for len(p) > 0 {
		k := min(len(p), chunk-len(w.buf))
		if len(w.buf)+k > cap(w.buf) {
			w.grow(len(w.buf) + k)
		}
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		w.written += int64(k)
		if len(w.buf) == chunk {
			if err := w.addChunk(); err != nil {
				w.done = true
				w.b.unregister(w)
				return total - len(p), wrap("write", w.id, errors.Join(err, w.discardLocked()))
			}
		}
	}
	return total, nil
}

// grow replaces the chunk buffer by one with room for need bytes (at most
// a chunk). A chunk known to be full size gets a pooled buffer; the last
// chunk of an object of known size gets an exact one; an object of unknown
// size grows geometrically while it may still be stored inline.
func (w *badgerWriter) grow(need int) {
	chunk := w.b.chunkSize
	var nb []byte
	switch {
	case w.meta.Size >= 0:
		start := w.written - int64(len(w.buf)) // offset of this chunk
		if rest := w.meta.Size - start; rest < int64(chunk) {
			nb = make([]byte, 0, rest)
		} else {
			nb = w.b.getBuf()
		}
	case need <= w.b.inlineMax:
		nb = make([]byte, 0, min(max(need, 2*cap(w.buf), 512), w.b.inlineMax))
	default:
		nb = w.b.getBuf()
	}
	w.buf = append(nb, w.buf...)
}

// addChunk hands the buffer to the sink as the next chunk.
func (w *badgerWriter) addChunk() error {
	if w.s == nil {
		s, err := w.b.newSink(w.id, w.b.asFile(max(w.meta.Size, w.written)))
		if err != nil {
			return err
		}
		w.s = s
	}
	buf := w.buf
	if err := w.b.admit(context.Background(), int64(len(buf))); err != nil {
		return err
	}
	w.buf = nil
	w.s.admitted += int64(len(buf))
	return w.s.add(buf, cap(buf) == w.b.chunkSize)
}

func (w *badgerWriter) Commit(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.b.acquire(); err != nil {
		return err // Close aborts the writer
	}
	defer w.b.release()
	if w.done {
		return ErrAborted
	}
	w.done = true
	defer w.b.unregister(w)

	if err := ctxErr(ctx, "commit", w.id); err != nil {
		return errors.Join(err, w.discardLocked())
	}
	if w.meta.Size >= 0 && w.meta.Size != w.written {
		return errors.Join(sizeMismatch(w.id, w.meta.Size, w.written), w.discardLocked())
	}
	meta := w.meta
	meta.Size = w.written
	meta = normalize(meta, time.Now())
	if w.discardAll {
		return nil
	}
	if w.s == nil && len(w.buf) <= w.b.inlineMax {
		data := w.buf
		w.buf = nil
		if err := w.b.admit(ctx, int64(len(data))); err != nil {
			return wrap("commit", w.id, err)
		}
		defer w.b.space.done(int64(len(data)))
		_, err := w.b.commitRecord(w.id, &record{meta: meta, inline: true, data: data})
		return wrap("commit", w.id, err)
	}
	if len(w.buf) > 0 {
		if err := w.addChunk(); err != nil {
			return wrap("commit", w.id, errors.Join(err, w.discardLocked()))
		}
	}
	return wrap("commit", w.id, w.b.commitChunks(w.id, meta, w.s))
}

func (w *badgerWriter) Abort() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.b.acquire(); err != nil {
		return nil // Close aborts the writer
	}
	defer w.b.release()
	if w.done {
		return nil
	}
	w.done = true
	w.b.unregister(w)
	return wrap("abort", w.id, w.discardLocked())
}

// discardLocked drops the buffer and the chunks written. The caller holds
// w.mu and keeps the database open.
func (w *badgerWriter) discardLocked() error {
	w.buf = nil
	if w.s == nil {
		return nil
	}
	err := w.s.discard()
	w.s = nil
	return err
}
