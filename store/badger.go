package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
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
	// DefaultFileThreshold is the size from which a value is a file of
	// its own (BadgerConfig.FileThreshold).
	DefaultFileThreshold = 256 << 10
	// DefaultGCInterval is how often DefaultBadgerConfig runs a reclaim
	// round (see Badger.Reclaim) at the latest.
	DefaultGCInterval = time.Minute
	// DefaultReclaimAfter is how many bytes of deleted objects start a
	// reclaim round before the interval is up (unless a quota asks for
	// less: see BadgerConfig.ReclaimAfter).
	DefaultReclaimAfter = 64 << 20

	// Tuned Badger options: about 6 MiB of Go heap per open store, against
	// about 85 MiB with Badger's defaults.
	memTableSize   = 4 << 20
	valueThreshold = 64 << 10 // must be <= 15% of memTableSize
	blockCacheSize = 8 << 20
	indexCacheSize = 4 << 20
	baseTableSize  = 1 << 20
	// maxValueLogFileSize is the size of a value-log file. With a quota
	// they are smaller (a sixteenth of it, at least 1 MiB): the file being
	// written is never collected, so its garbage stays until it is full.
	maxValueLogFileSize = 64 << 20
	minValueLogFileSize = 1 << 20

	// maxInline is the largest value stored inside its metadata record
	// rather than in chunks (if the chunk size is not smaller).
	maxInline = 16 << 10
	// flushBytes is how many chunk bytes a write gathers before writing
	// them in one WriteBatch (at most a value-log file's size: a batch
	// goes into one file). WriteBatch only limits the estimated LSM size of
	// a batch, and a value-log value counts as a pointer, so without this a
	// large object would be held in memory whole.
	flushBytes = 8 << 20
	// gcDiscardRatio is the fraction of a value-log file that must be
	// garbage for GC to rewrite it.
	gcDiscardRatio = 0.5
	// gcFullDiscardRatio is the ratio of a round a write that found the
	// store full waits for: rewriting files mostly live is worth it then.
	gcFullDiscardRatio = 0.2
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
	// GCInterval is how often a reclaim round (Badger.Reclaim) runs in the
	// background at the latest: deleted objects give their space back
	// within about this long. A negative interval disables the timer (rounds
	// still run after ReclaimAfter bytes are deleted, and when a write
	// finds the store full); zero is invalid. In-memory stores ignore it.
	GCInterval time.Duration
	// ReclaimAfter is how many bytes of deleted objects start a reclaim
	// round at once. 0 is DefaultReclaimAfter, or an eighth of Quota if
	// that is less (at least 1 MiB); negative is invalid.
	ReclaimAfter int64
	// OnReclaim, if set, is called after every reclaim round with what it
	// did, from the store's background goroutine (it must not block long).
	// Tests synchronise on it.
	OnReclaim func(ReclaimStats)
	// Logger receives Badger's warnings and errors, and at debug level its
	// info and debug messages. Nil means slog.Default().
	Logger *slog.Logger
	// SyncWrites makes every write fsync before it returns.
	SyncWrites bool
	// FileThreshold is the size from which a value is a file of its own
	// (under Dir/blobs) rather than chunks in Badger's value log: its
	// space is back as soon as it is deleted, with no reclaim round. 0 is
	// DefaultFileThreshold; negative keeps every value in Badger. In-memory
	// stores ignore it.
	FileThreshold int64

	// Quota bounds the space the store's files take on disk, in bytes; a
	// write that would take it past the quota fails with ErrStoreFull. 0 is
	// no quota. Deleted objects free their space once a reclaim round has
	// run (see Badger.Reclaim); a write that finds the store full while
	// deleted objects wait for one waits for it first. In-memory stores
	// ignore it.
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
	case c.ReclaimAfter < 0:
		return fmt.Errorf("%w: reclaim-after %d is negative (0 is the default)", ErrInvalidConfig, c.ReclaimAfter)
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
	db         *badger.DB
	dir        string
	inMemory   bool
	seq        *badger.Sequence
	log        *slog.Logger
	chunkSize  int
	inlineMax  int
	firstGen   uint64 // generations below it were made by earlier runs
	bufs       sync.Pool
	space      *space // nil: no quota and no reserve (in memory)
	flushAt    int    // chunk bytes a sink gathers before writing them
	syncWrites bool   // sync a value's file before its record is written
	fileMin    int64  // values of at least this many bytes are files; 0: none

	// mu is held for reading by every operation touching db, and for
	// writing by Close while it marks the store closed.
	mu     sync.RWMutex
	closed bool
	// wl is held for reading around every write to db, and for writing by
	// a reclaim round while it flushes the memtables: Badger refuses writes
	// (ErrBlockedWrites) meanwhile. Taken after mu.
	wl sync.RWMutex

	rc reclaimer

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
		WithValueLogFileSize(vlogFileSize(cfg.Quota))
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
		db:         db,
		dir:        cfg.Dir,
		inMemory:   cfg.InMemory,
		seq:        seq,
		log:        logger,
		chunkSize:  chunk,
		inlineMax:  min(maxInline, chunk),
		firstGen:   first,
		space:      sp,
		flushAt:    int(min(flushBytes, vlogFileSize(cfg.Quota))),
		syncWrites: cfg.SyncWrites,
		fileMin:    fileMin(cfg),
		writers:    make(map[*badgerWriter]struct{}),
		stop:       make(chan struct{}),
		swept:      make(chan struct{}),
	}
	b.rc.init(cfg)
	if cfg.InMemory {
		close(b.swept)
	} else {
		b.wg.Add(1)
		go b.background(cfg.GCInterval)
	}
	return b, nil
}

// fileMin is the FileThreshold of cfg in effect (0: no files).
func fileMin(cfg BadgerConfig) int64 {
	switch {
	case cfg.InMemory || cfg.FileThreshold < 0:
		return 0
	case cfg.FileThreshold == 0:
		return DefaultFileThreshold
	}
	return cfg.FileThreshold
}

// asFile reports whether a value of n bytes is a file of its own.
func (b *Badger) asFile(n int64) bool { return b.fileMin > 0 && n >= b.fileMin }

// vlogFileSize is the size of the value-log files of a store with quota.
func vlogFileSize(quota int64) int64 {
	if quota <= 0 {
		return maxValueLogFileSize
	}
	return min(maxValueLogFileSize, max(minValueLogFileSize, quota/16))
}

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
