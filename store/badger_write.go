// This file holds the Badger store's Put and Delete, and what Put and the
// streaming writer share: committing a record, the sink that writes chunks
// in bounded batches, and the pool of chunk buffers.

package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/rayhost/rayhost/internal/ids"
)

// commitRecord stores rec as the record of id unless id has one. It reports
// whether it stored it.
func (b *Badger) commitRecord(id ids.ObjectID, rec *record) (stored bool, err error) {
	key := metaKey(id)
	val := appendRecord(nil, rec)
	b.wl.RLock()
	defer b.wl.RUnlock()
	for attempt := 0; ; attempt++ {
		err = b.db.Update(func(txn *badger.Txn) error {
			_, err := txn.Get(key)
			if err == nil {
				stored = false
				return nil
			}
			if !errors.Is(err, badger.ErrKeyNotFound) {
				return err
			}
			stored = true
			return txn.Set(key, val)
		})
		if !errors.Is(err, badger.ErrConflict) || attempt >= maxConflictRetries {
			return stored && err == nil, err
		}
	}
}

// Put implements Store.
func (b *Badger) Put(ctx context.Context, id ids.ObjectID, meta Meta, data []byte) error {
	if err := checkID(id); err != nil {
		return err
	}
	if err := ctxErr(ctx, "put", id); err != nil {
		return err
	}
	if meta.Size >= 0 && meta.Size != int64(len(data)) {
		return sizeMismatch(id, meta.Size, int64(len(data)))
	}
	meta.Size = int64(len(data))
	meta = normalize(meta, time.Now())
	if err := b.acquire(); err != nil {
		return err
	}
	defer b.release()

	if len(data) <= b.inlineMax {
		if err := b.admit(ctx, int64(len(data))); err != nil {
			return wrap("put", id, err)
		}
		defer b.space.done(int64(len(data)))
		_, err := b.commitRecord(id, &record{meta: meta, inline: true, data: data})
		return wrap("put", id, err)
	}
	if ok, err := b.exists(id); ok || err != nil {
		return wrap("put", id, err)
	}
	if err := b.admit(ctx, int64(len(data))); err != nil {
		return wrap("put", id, err)
	}
	defer b.space.done(int64(len(data)))
	if int64(len(data)-1)/int64(b.chunkSize) >= math.MaxUint32 {
		return fmt.Errorf("store: put %s: %d bytes is too many chunks of %d", id, len(data), b.chunkSize)
	}
	s, err := b.newSink(id, b.asFile(int64(len(data))))
	if err != nil {
		return wrap("put", id, err)
	}
	for off := 0; off < len(data); off += b.chunkSize {
		if err := ctx.Err(); err != nil {
			return wrap("put", id, errors.Join(err, s.discard()))
		}
		// WriteBatch keeps a reference to the value until flushed; data is
		// not modified before Put returns, and s.flush happens before that.
		if err := s.add(data[off:min(off+b.chunkSize, len(data))], false); err != nil {
			return wrap("put", id, errors.Join(err, s.discard()))
		}
	}
	return wrap("put", id, b.commitChunks(id, meta, s))
}

// commitChunks flushes the chunks of s and stores the record pointing at
// them. If id has a record already, the chunks are deleted.
func (b *Badger) commitChunks(id ids.ObjectID, meta Meta, s *sink) error {
	rec := &record{meta: meta, gen: s.gen, chunkSize: int64(b.chunkSize)}
	if s.file != nil {
		if err := s.file.finish(b.syncWrites); err != nil {
			return errors.Join(err, s.discard())
		}
		rec = &record{meta: meta, file: true, gen: s.gen, sum: s.file.sum}
	} else if err := s.flush(); err != nil {
		return errors.Join(err, s.discard())
	}
	stored, err := b.commitRecord(id, rec)
	if !stored {
		return errors.Join(err, s.discard())
	}
	return err
}

// Delete implements Store.
func (b *Badger) Delete(ctx context.Context, id ids.ObjectID) error {
	if err := ctxErr(ctx, "delete", id); err != nil {
		return err
	}
	if err := b.acquire(); err != nil {
		return err
	}
	defer b.release()
	key := metaKey(id)
	var rec record
	var err error
	b.wl.RLock()
	for attempt := 0; ; attempt++ {
		err = b.db.Update(func(txn *badger.Txn) error {
			var err error
			if rec, err = getRecord(txn, id, false); err != nil {
				return err
			}
			return txn.Delete(key)
		})
		if !errors.Is(err, badger.ErrConflict) || attempt >= maxConflictRetries {
			break
		}
	}
	b.wl.RUnlock()
	if err != nil {
		return wrap("delete", id, err)
	}
	if rec.file {
		// Its space is back now: no reclaim round needed.
		b.rc.noteDeleted(recordOverhead)
		if err := b.removeFile(id, &rec); err != nil {
			return wrap("delete", id, fmt.Errorf("its file (left for the next sweep): %w", err))
		}
		return nil
	}
	if n := rec.chunks(); n > 0 {
		if err := b.deleteChunks(id, rec.gen, n); err != nil {
			return wrap("delete", id, fmt.Errorf("chunks (left for the next sweep): %w", err))
		}
	}
	b.rc.noteDeleted(rec.meta.Size + recordOverhead)
	return nil
}

// deleteChunks deletes chunks [0, n) of generation gen of id.
func (b *Badger) deleteChunks(id ids.ObjectID, gen uint64, n uint32) error {
	b.wl.RLock()
	defer b.wl.RUnlock()
	wb := b.db.NewWriteBatch()
	for i := range n {
		if err := wb.Delete(chunkKey(id, gen, i)); err != nil {
			wb.Cancel()
			return err
		}
	}
	return wb.Flush()
}

// sink writes the chunks of one object generation: it gathers them and
// writes them in WriteBatches of about Badger.flushAt bytes; or, if file is
// set, writes each into the object's file as it comes.
type sink struct {
	b       *Badger
	id      ids.ObjectID
	gen     uint64
	n       uint32   // chunks added
	pending [][]byte // chunks added since the last flush, from chunk n-len(pending)
	bytes   int      // their bytes
	// admitted counts the bytes a streaming writer had admitted by the
	// store's space accounting and not yet written; released at flush.
	admitted int64
	pooled   []*[]byte // buffers to recycle after the flush
	file     *fileSink // the object is a file (asFile)
}

// newSink starts a generation of id, as a file if asFile.
func (b *Badger) newSink(id ids.ObjectID, asFile bool) (*sink, error) {
	b.wl.RLock()
	gen, err := b.seq.Next() // may write: the sequence's next lease
	b.wl.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("generation: %w", err)
	}
	s := &sink{b: b, id: id, gen: gen}
	if asFile {
		if s.file, err = b.createFile(id, gen); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// add queues val as the next chunk. val must not change until the next
// flush; if pooled, it came from getBuf and is recycled after the flush.
func (s *sink) add(val []byte, pooled bool) error {
	if s.file != nil {
		s.n++
		err := s.file.write(val)
		s.release()
		if pooled {
			s.b.putBuf(&val)
		}
		return err
	}
	if s.n == math.MaxUint32 {
		return errors.New("too many chunks")
	}
	s.n++
	s.pending = append(s.pending, val)
	if pooled {
		s.pooled = append(s.pooled, &val)
	}
	s.bytes += len(val)
	if s.bytes >= s.b.flushAt {
		return s.flush()
	}
	return nil
}

// flush writes the chunks added since the last flush and waits until they
// are written.
func (s *sink) flush() error {
	if len(s.pending) == 0 {
		return nil
	}
	err := s.write()
	clear(s.pending)
	s.pending = s.pending[:0]
	s.bytes = 0
	s.release()
	for _, p := range s.pooled {
		s.b.putBuf(p)
	}
	s.pooled = s.pooled[:0]
	return err
}

func (s *sink) write() error {
	s.b.wl.RLock()
	defer s.b.wl.RUnlock()
	wb := s.b.db.NewWriteBatch()
	first := s.n - uint32(len(s.pending))
	for i, val := range s.pending {
		if err := wb.Set(chunkKey(s.id, s.gen, first+uint32(i)), val); err != nil {
			wb.Cancel()
			return err
		}
	}
	return wb.Flush()
}

// release hands the bytes admitted for the chunks back to the space
// accounting, once they are written or dropped.
func (s *sink) release() {
	if s.admitted > 0 {
		s.b.space.done(s.admitted)
		s.admitted = 0
	}
}

// discard drops pending chunks and deletes those written.
func (s *sink) discard() error {
	clear(s.pending)
	s.pending, s.pooled, s.bytes = nil, nil, 0
	s.release()
	if s.file != nil {
		err := s.file.remove()
		s.file, s.n = nil, 0
		return err
	}
	if s.n == 0 {
		return nil
	}
	err := s.b.deleteChunks(s.id, s.gen, s.n)
	s.n = 0
	return err
}

// getBuf returns an empty buffer of capacity chunkSize.
func (b *Badger) getBuf() []byte {
	if p, ok := b.bufs.Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return make([]byte, 0, b.chunkSize)
}

func (b *Badger) putBuf(p *[]byte) {
	if cap(*p) == b.chunkSize {
		b.bufs.Put(p)
	}
}
