package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/rayhost/rayhost/internal/ids"
)

const (
	// DefaultChunkSize is the chunk size of DefaultBadgerConfig.
	DefaultChunkSize = 1 << 20
	// MaxChunkSize is the largest ChunkSize OpenBadger accepts.
	MaxChunkSize = 64 << 20
	// MaxInMemoryChunkSize is the largest chunk size of an in-memory Badger
	// store. Badger in in-memory mode cannot store a value of ValueThreshold
	// (64 KiB) bytes or more, so OpenBadger lowers a larger ChunkSize to
	// this in in-memory mode.
	MaxInMemoryChunkSize = valueThreshold - 4<<10
	// DefaultGCInterval is how often DefaultBadgerConfig runs value-log GC.
	DefaultGCInterval = time.Minute

	// Tuned Badger options: about 6 MiB of Go heap per open store, against
	// about 85 MiB with Badger's defaults.
	memTableSize     = 4 << 20
	valueThreshold   = 64 << 10 // must be <= 15% of memTableSize
	blockCacheSize   = 8 << 20
	indexCacheSize   = 4 << 20
	baseTableSize    = 1 << 20
	valueLogFileSize = 64 << 20

	// maxInline is the largest value stored inside its metadata record
	// rather than in chunks (if the chunk size is not smaller).
	maxInline = 16 << 10
	// flushBytes is how many chunk bytes a write lets pile up in a
	// WriteBatch before flushing it. WriteBatch only limits the estimated
	// LSM size of a batch, and a value-log value counts as a pointer, so
	// without this a large object would be held in memory whole.
	flushBytes = 8 << 20
	// gcDiscardRatio is the fraction of a value-log file that must be
	// garbage for GC to rewrite it.
	gcDiscardRatio = 0.5
	// genBandwidth is how many generations a Badger sequence lease holds.
	genBandwidth = 4096
	// maxConflictRetries bounds the retries of a metadata transaction.
	maxConflictRetries = 100

	// Key layout.
	prefixMeta  = 'm' // 'm' | id                           -> encoded record
	prefixChunk = 'c' // 'c' | id | gen (u64 BE) | i (u32 BE) -> chunk i
	metaKeyLen  = 1 + ids.ObjectIDSize
	chunkKeyLen = 1 + ids.ObjectIDSize + 8 + 4
)

// genKey is the key of the Badger sequence that numbers chunk generations.
var genKey = []byte("sgen")

// BadgerConfig configures a Badger store.
type BadgerConfig struct {
	// Dir is the directory of the store. Required unless InMemory; must be
	// empty if InMemory. Only one process may open a directory at a time.
	Dir string
	// InMemory keeps everything in memory; nothing survives Close.
	InMemory bool
	// ChunkSize is the number of bytes per chunk of a large object; it must
	// be in (0, MaxChunkSize]. In in-memory mode a ChunkSize above
	// MaxInMemoryChunkSize is lowered to it (see Badger.ChunkSize).
	ChunkSize int
	// GCInterval is how often value-log GC runs in the background. A
	// negative interval disables it; zero is invalid. In-memory stores have
	// no value log and ignore it.
	GCInterval time.Duration
	// Logger receives Badger's warnings and errors, and at debug level its
	// info and debug messages. Nil means slog.Default().
	Logger *slog.Logger
	// SyncWrites makes every write fsync before it returns.
	SyncWrites bool

	// Quota bounds the space the store's files take on disk, in bytes; a
	// write that would take it past the quota fails with ErrStoreFull. 0 is
	// no quota. Deleted objects free their space once value-log GC and
	// compactions have run. In-memory stores ignore it.
	Quota int64
	// Reserve is the free space, in bytes, writes leave on the filesystem
	// of Dir: a write that would leave less fails with ErrStoreFull. It
	// must be 0 (DefaultReserve of the filesystem's size: 5%, at most 1 GiB,
	// at least MinReserve) or at least MinReserve, which covers the writes
	// Badger makes on its own (see MinReserve), so a full disk is an error
	// and never a SIGBUS, and a store that filled its disk opens again.
	// In-memory stores ignore it.
	Reserve int64
	// FreeSpace probes the free space of Dir's filesystem; nil is
	// FreeSpace (statfs). A seam for tests.
	FreeSpace FreeSpaceFunc
}

// DefaultBadgerConfig returns the default configuration for a store in dir.
// For an in-memory store, call DefaultBadgerConfig("") and set InMemory.
func DefaultBadgerConfig(dir string) BadgerConfig {
	return BadgerConfig{
		Dir:        dir,
		ChunkSize:  DefaultChunkSize,
		GCInterval: DefaultGCInterval,
	}
}

func (c BadgerConfig) validate() error {
	switch {
	case c.InMemory && c.Dir != "":
		return fmt.Errorf("%w: dir %q given for an in-memory store", ErrInvalidConfig, c.Dir)
	case !c.InMemory && c.Dir == "":
		return fmt.Errorf("%w: dir is required unless in memory", ErrInvalidConfig)
	case c.ChunkSize <= 0 || c.ChunkSize > MaxChunkSize:
		return fmt.Errorf("%w: chunk size %d not in (0, %d]", ErrInvalidConfig, c.ChunkSize, MaxChunkSize)
	case c.GCInterval == 0:
		return fmt.Errorf("%w: gc interval is 0 (use a negative interval to disable gc)", ErrInvalidConfig)
	case c.Quota < 0:
		return fmt.Errorf("%w: quota %d is negative (0 is none)", ErrInvalidConfig, c.Quota)
	case c.Reserve != 0 && c.Reserve < MinReserve:
		return fmt.Errorf("%w: reserve %d is below the minimum of %d bytes that Badger's own writes need (0 is the default)", ErrInvalidConfig, c.Reserve, MinReserve)
	}
	return nil
}

// Badger is a Store backed by a Badger database.
//
// Objects of up to 16 KiB (or the chunk size, if smaller) are stored inside
// their metadata record. Larger ones are split into chunks of ChunkSize
// bytes, written before the metadata record, so a crash mid-write never
// exposes a partial object. Chunk keys carry a generation number unique to
// one write, so concurrent writers of one id, or a Delete and a new Put of
// it, never mix chunks. Chunks left by a crash are deleted in the background
// after the store is reopened.
//
// Memory: an open store costs about 6 MiB of Go heap. A streaming write or
// a large Put holds at most about 8 MiB of chunks not yet written plus one
// chunk; an Open reader holds one chunk.
type Badger struct {
	db        *badger.DB
	seq       *badger.Sequence
	log       *slog.Logger
	chunkSize int
	inlineMax int
	firstGen  uint64 // generations below it were made by earlier runs
	bufs      sync.Pool
	space     *space // nil: no quota and no reserve (in memory)

	// mu is held for reading by every operation touching db, and for
	// writing by Close while it marks the store closed.
	mu     sync.RWMutex
	closed bool

	wmu     sync.Mutex
	writers map[*badgerWriter]struct{} // uncommitted writers

	stop  chan struct{}
	wg    sync.WaitGroup
	swept chan struct{} // closed when the orphan sweep is over
}

var _ Store = (*Badger)(nil)

// OpenBadger opens (creating if needed) the store configured by cfg.
func OpenBadger(cfg BadgerConfig) (*Badger, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	chunk := cfg.ChunkSize
	if cfg.InMemory {
		chunk = min(chunk, MaxInMemoryChunkSize)
	}

	sp, err := newSpace(cfg, logger)
	if err != nil {
		return nil, err
	}

	opts := badger.DefaultOptions(cfg.Dir).
		WithInMemory(cfg.InMemory).
		WithSyncWrites(cfg.SyncWrites).
		WithLogger(newBadgerLogger(logger)).
		WithMemTableSize(memTableSize).
		WithValueThreshold(valueThreshold).
		WithBlockCacheSize(blockCacheSize).
		WithIndexCacheSize(indexCacheSize).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(4).
		WithNumCompactors(2).
		WithBaseTableSize(baseTableSize).
		WithValueLogFileSize(valueLogFileSize)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("store: open badger %q: %w", cfg.Dir, err)
	}
	seq, err := db.GetSequence(genKey, genBandwidth)
	var first uint64
	if err == nil {
		first, err = seq.Next()
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: open badger %q: generation sequence: %w", cfg.Dir, err)
	}

	b := &Badger{
		db:        db,
		seq:       seq,
		log:       logger,
		chunkSize: chunk,
		inlineMax: min(maxInline, chunk),
		firstGen:  first,
		space:     sp,
		writers:   make(map[*badgerWriter]struct{}),
		stop:      make(chan struct{}),
		swept:     make(chan struct{}),
	}
	if cfg.InMemory {
		close(b.swept)
	} else {
		b.wg.Add(1)
		go b.background(cfg.GCInterval)
	}
	return b, nil
}

// CheckSpace implements Store.
func (b *Badger) CheckSpace(n int64) error { return b.space.check(n) }

// ChunkSize returns the effective chunk size of new objects.
func (b *Badger) ChunkSize() int { return b.chunkSize }

// acquire checks that the store is open and holds it open until release.
func (b *Badger) acquire() error {
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (b *Badger) release() { b.mu.RUnlock() }

// Close aborts uncommitted writers, stops background work and closes the
// database. It is idempotent.
func (b *Badger) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()

	close(b.stop)
	b.wg.Wait()

	b.wmu.Lock()
	writers := b.writers
	b.writers = nil
	b.wmu.Unlock()
	for w := range writers {
		w.mu.Lock()
		if !w.done {
			w.done = true
			if err := w.discardLocked(); err != nil {
				b.log.Warn("store: discarding uncommitted writer on close", "object", w.id, "err", err)
			}
		}
		w.mu.Unlock()
	}

	err := b.seq.Release()
	if cerr := b.db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

func metaKey(id ids.ObjectID) []byte {
	k := make([]byte, metaKeyLen)
	k[0] = prefixMeta
	copy(k[1:], id[:])
	return k
}

func chunkKey(id ids.ObjectID, gen uint64, i uint32) []byte {
	k := make([]byte, chunkKeyLen)
	k[0] = prefixChunk
	copy(k[1:], id[:])
	binary.BigEndian.PutUint64(k[1+ids.ObjectIDSize:], gen)
	binary.BigEndian.PutUint32(k[1+ids.ObjectIDSize+8:], i)
	return k
}

// parseChunkKey splits a chunk key.
func parseChunkKey(k []byte) (id ids.ObjectID, gen uint64, i uint32, ok bool) {
	if len(k) != chunkKeyLen || k[0] != prefixChunk {
		return id, 0, 0, false
	}
	copy(id[:], k[1:])
	gen = binary.BigEndian.Uint64(k[1+ids.ObjectIDSize:])
	i = binary.BigEndian.Uint32(k[1+ids.ObjectIDSize+8:])
	return id, gen, i, true
}

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

// wrap adds the operation and id to an error that does not yet say which
// object it is about.
func wrap(op string, id ids.ObjectID, err error) error {
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrClosed) {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) && !errors.Is(err, ErrStoreFull) {
		// The disk filled up behind the store's back (another process).
		return fmt.Errorf("store: %s %s: %w: %w", op, id, ErrStoreFull, err)
	}
	return fmt.Errorf("store: %s %s: %w", op, id, err)
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
		if err != nil || rec.inline {
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
			cur, serr := getRecordView(r.b.db, r.id)
			if errors.Is(serr, ErrNotFound) || (serr == nil && (cur.inline || cur.gen != r.rec.gen)) {
				err = fmt.Errorf("%w: %s deleted while reading", ErrNotFound, r.id)
			}
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

// commitRecord stores rec as the record of id unless id has one. It reports
// whether it stored it.
func (b *Badger) commitRecord(id ids.ObjectID, rec *record) (stored bool, err error) {
	key := metaKey(id)
	val := appendRecord(nil, rec)
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
		if err := b.space.admit(int64(len(data))); err != nil {
			return wrap("put", id, err)
		}
		defer b.space.done(int64(len(data)))
		_, err := b.commitRecord(id, &record{meta: meta, inline: true, data: data})
		return wrap("put", id, err)
	}
	if ok, err := b.exists(id); ok || err != nil {
		return wrap("put", id, err)
	}
	if err := b.space.admit(int64(len(data))); err != nil {
		return wrap("put", id, err)
	}
	defer b.space.done(int64(len(data)))
	if int64(len(data)-1)/int64(b.chunkSize) >= math.MaxUint32 {
		return fmt.Errorf("store: put %s: %d bytes is too many chunks of %d", id, len(data), b.chunkSize)
	}
	s, err := b.newSink(id)
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
	if err := s.flush(); err != nil {
		return errors.Join(err, s.discard())
	}
	stored, err := b.commitRecord(id, &record{meta: meta, gen: s.gen, chunkSize: int64(b.chunkSize)})
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
	if err != nil {
		return wrap("delete", id, err)
	}
	if n := rec.chunks(); n > 0 {
		if err := b.deleteChunks(id, rec.gen, n); err != nil {
			return wrap("delete", id, fmt.Errorf("chunks (left for the next sweep): %w", err))
		}
	}
	return nil
}

// deleteChunks deletes chunks [0, n) of generation gen of id.
func (b *Badger) deleteChunks(id ids.ObjectID, gen uint64, n uint32) error {
	wb := b.db.NewWriteBatch()
	for i := range n {
		if err := wb.Delete(chunkKey(id, gen, i)); err != nil {
			wb.Cancel()
			return err
		}
	}
	return wb.Flush()
}

// sink writes the chunks of one object generation through WriteBatches.
type sink struct {
	b       *Badger
	id      ids.ObjectID
	gen     uint64
	wb      *badger.WriteBatch // nil between flushes
	n       uint32             // chunks added
	pending int                // bytes added since the last flush
	// admitted counts the bytes a streaming writer had admitted by the
	// store's space accounting and not yet written; released at flush.
	admitted int64
	pooled   []*[]byte // buffers to recycle after the flush
}

func (b *Badger) newSink(id ids.ObjectID) (*sink, error) {
	gen, err := b.seq.Next()
	if err != nil {
		return nil, fmt.Errorf("generation: %w", err)
	}
	return &sink{b: b, id: id, gen: gen}, nil
}

// add queues val as the next chunk. val must not change until the next
// flush; if pooled, it came from getBuf and is recycled after the flush.
func (s *sink) add(val []byte, pooled bool) error {
	if s.n == math.MaxUint32 {
		return errors.New("too many chunks")
	}
	if s.wb == nil {
		s.wb = s.b.db.NewWriteBatch()
	}
	if err := s.wb.Set(chunkKey(s.id, s.gen, s.n), val); err != nil {
		return err
	}
	s.n++
	if pooled {
		s.pooled = append(s.pooled, &val)
	}
	s.pending += len(val)
	if s.pending >= flushBytes {
		return s.flush()
	}
	return nil
}

// flush waits until the chunks added are written.
func (s *sink) flush() error {
	if s.wb == nil {
		return nil
	}
	err := s.wb.Flush()
	s.wb = nil
	s.pending = 0
	s.release()
	for _, p := range s.pooled {
		s.b.putBuf(p)
	}
	s.pooled = s.pooled[:0]
	return err
}

// release hands the bytes admitted for the chunks back to the space
// accounting, once they are written or dropped.
func (s *sink) release() {
	if s.admitted > 0 {
		s.b.space.done(s.admitted)
		s.admitted = 0
	}
}

// discard cancels pending chunks and deletes those written.
func (s *sink) discard() error {
	if s.wb != nil {
		s.wb.Cancel() // waits for the batches already committing
		s.wb = nil
	}
	s.pooled = nil // Cancel does not promise Badger is done with them
	s.release()
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
		s, err := w.b.newSink(w.id)
		if err != nil {
			return err
		}
		w.s = s
	}
	buf := w.buf
	if err := w.b.space.admit(int64(len(buf))); err != nil {
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
		if err := w.b.space.admit(int64(len(data))); err != nil {
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

// background sweeps orphaned chunks, then runs value-log GC every
// interval (if positive) until Close.
func (b *Badger) background(interval time.Duration) {
	defer b.wg.Done()
	n, err := b.sweep()
	close(b.swept)
	switch {
	case err != nil && !errors.Is(err, errStopped):
		b.log.Warn("store: sweeping orphaned chunks", "err", err, "deleted", n)
	case n > 0:
		b.log.Info("store: deleted orphaned chunks", "chunks", n)
	}
	if interval < 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.runGC()
		}
	}
}

// runGC rewrites value-log files until none has enough garbage. It returns
// the number of files rewritten.
func (b *Badger) runGC() int {
	n := 0
	for {
		select {
		case <-b.stop:
			return n
		default:
		}
		err := b.db.RunValueLogGC(gcDiscardRatio)
		if err == nil {
			n++
			continue
		}
		if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
			b.log.Warn("store: value log gc", "err", err)
		}
		if n > 0 {
			b.log.Debug("store: value log gc", "rewritten", n)
		}
		return n
	}
}

var errStopped = errors.New("store: stopped")

// sweep deletes chunks of generations made by earlier runs that no record
// points at: left by a crash mid-write, or between the two steps of Delete.
// Generations of this run are never touched, so it can run concurrently
// with writes.
func (b *Badger) sweep() (int, error) {
	wb := b.db.NewWriteBatch()
	deleted := 0
	err := b.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte{prefixChunk}
		it := txn.NewIterator(opts)
		defer it.Close()
		var (
			lastID    ids.ObjectID
			haveLast  bool
			liveGen   uint64
			liveFound bool
		)
		for it.Rewind(); it.Valid(); it.Next() {
			select {
			case <-b.stop:
				return errStopped
			default:
			}
			key := it.Item().Key()
			id, gen, _, ok := parseChunkKey(key)
			if !ok {
				b.log.Warn("store: unexpected key", "key", fmt.Sprintf("%x", key))
				continue
			}
			if gen >= b.firstGen {
				continue
			}
			if !haveLast || id != lastID {
				lastID, haveLast = id, true
				rec, err := getRecord(txn, id, false)
				switch {
				case err == nil:
					liveGen, liveFound = rec.gen, !rec.inline
				case errors.Is(err, ErrNotFound):
					liveFound = false
				default:
					return err
				}
			}
			if liveFound && gen == liveGen {
				continue
			}
			if err := wb.Delete(it.Item().KeyCopy(nil)); err != nil {
				return err
			}
			deleted++
		}
		return nil
	})
	if err != nil {
		wb.Cancel()
		return deleted, err
	}
	return deleted, wb.Flush()
}
