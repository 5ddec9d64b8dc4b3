// This file holds the Badger store's background work: the sweep of
// orphaned chunks at open, and reclaim rounds, which give the space of
// deleted objects back to the filesystem.

package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/rayhost/rayhost/internal/ids"
)

// ReclaimStats is what a reclaim round did.
type ReclaimStats struct {
	// Round numbers the rounds of this store from 1.
	Round uint64
	// Deleted is the bytes of objects deleted (values and their records)
	// since the round before.
	Deleted int64
	// Flushed: the memtables were flushed and level 0 compacted, because
	// objects had been deleted.
	Flushed bool
	// Flattened: the LSM tree was compacted into one level.
	Flattened bool
	// Rewritten is the number of value-log files collected.
	Rewritten int
	// Full: a write that found the store full asked for the round, which
	// collected value-log files with less garbage than usual.
	Full bool
	// Before and After are the bytes the store's files took on disk before
	// and after the round.
	Before, After int64
	// Took is how long the round took.
	Took time.Duration
	// Err is what went wrong, if anything (the round went on without it).
	Err error
}

// Why rounds are needed, measured on this store (docs/BENCHMARKS.md,
// "Object store: giving space back"): Badger frees a deleted value only when a
// compaction meets both its tombstone and the value. That drops a value
// kept in the LSM tree and, for one in the value log, adds to the discard
// statistics of its file, which are all value-log GC goes by. But a
// memtable is flushed (and so compacted) only once it holds 4 MiB of keys,
// and a large object's chunks take a few dozen bytes of keys each: 256
// MiB of 1 MiB objects put and deleted left all 256 MiB on disk through
// any number of GC runs. And once the tree has more than one level below
// level 0, tombstones wait in the upper one until it outgrows its target
// size: 200,000 inline objects of 1 KiB put and deleted left 71 MiB of 90.
//
// So a round, when objects were deleted since the last one,
//  1. flushes the memtables and compacts level 0 into the base level
//     (DropPrefix of a sentinel key: Badger's one public call that
//     flushes; it refuses writes meanwhile, so the store's writes wait on
//     Badger.wl for the few tens of milliseconds it takes);
//  2. if the tree has data in more than one level below 0 and the bytes
//     deleted since the last flatten are at least a quarter of its size,
//     compacts it into one level (Flatten): the tombstones meet their
//     values. The quarter bounds the cost of rewriting the tree to four
//     times the bytes deleted;
//  3. runs value-log GC until no file is at least half garbage — a fifth,
//     in a round a write that found the store full waits for (the file
//     being written is never collected: it is why value-log files are
//     small under a quota);
//  4. measures the store's files again for the quota.
//
// Rounds run every GCInterval, once ReclaimAfter bytes were deleted since
// the last, when a write finds the store full while deleted objects wait
// for one (the write waits for it), and on Reclaim.

// reclaimKey is the sentinel a round writes and drops to flush the
// memtables. It sorts after every key of the store.
var reclaimKey = []byte("\xffreclaim")

// flattenShare: the tree is flattened once the bytes deleted since the
// last flatten reach 1/flattenShare of its size.
const flattenShare = 4

// reclaimer schedules reclaim rounds and lets callers wait for one.
type reclaimer struct {
	after   int64 // bytes deleted that start a round
	on      func(ReclaimStats)
	kick    chan struct{}
	deleted atomic.Int64 // bytes deleted since the last round began
	full    atomic.Bool  // a write that found the store full waits for the next round

	sinceFlatten int64 // bytes deleted since the last flatten; the background goroutine's

	mu      sync.Mutex
	started uint64 // rounds begun
	done    uint64 // rounds over
	doneCh  chan struct{}
	last    ReclaimStats
	relaxed bool // the last round collected at the usual ratio: a full one may find more
}

func (rc *reclaimer) init(cfg BadgerConfig) {
	rc.after = cfg.ReclaimAfter
	if rc.after == 0 {
		rc.after = DefaultReclaimAfter
		if cfg.Quota > 0 {
			rc.after = min(rc.after, max(cfg.Quota/8, 1<<20))
		}
	}
	rc.on = cfg.OnReclaim
	rc.kick = make(chan struct{}, 1)
	rc.doneCh = make(chan struct{})
}

// noteDeleted counts n bytes deleted, and starts a round once enough are.
func (rc *reclaimer) noteDeleted(n int64) {
	if rc.deleted.Add(n) >= rc.after {
		rc.poke()
	}
}

func (rc *reclaimer) poke() {
	select {
	case rc.kick <- struct{}{}:
	default:
	}
}

// pending reports whether a round may give space back to a full store:
// objects were deleted since the last began, one is running, or the last
// did not try as hard as a full store's round does.
func (rc *reclaimer) pending() bool {
	if rc.deleted.Load() > 0 {
		return true
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.started > rc.done || rc.relaxed
}

// wait starts a round and waits for one that began after the call to end.
// full says a write found the store full.
func (rc *reclaimer) wait(ctx context.Context, stop <-chan struct{}, full bool) (ReclaimStats, error) {
	if full {
		rc.full.Store(true)
	}
	rc.mu.Lock()
	need, ch := rc.started+1, rc.doneCh
	rc.mu.Unlock()
	rc.poke()
	for {
		select {
		case <-ch:
		case <-ctx.Done():
			return ReclaimStats{}, fmt.Errorf("store: reclaim: %w", ctx.Err())
		case <-stop:
			return ReclaimStats{}, ErrClosed
		}
		rc.mu.Lock()
		if rc.done >= need {
			st := rc.last
			rc.mu.Unlock()
			return st, nil
		}
		ch = rc.doneCh
		rc.mu.Unlock()
	}
}

// Reclaim runs a reclaim round (see ReclaimStats) and returns what it
// did, once one that began after the call is over. Rounds also run on
// their own (BadgerConfig.GCInterval, ReclaimAfter). An in-memory store
// has nothing to reclaim.
func (b *Badger) Reclaim(ctx context.Context) (ReclaimStats, error) {
	if b.inMemory {
		return ReclaimStats{}, nil
	}
	if err := b.acquire(); err != nil {
		return ReclaimStats{}, err
	}
	b.release()
	return b.rc.wait(ctx, b.stop, false)
}

// admit admits a write of n bytes (space.admit). A write that finds the
// store full while deleted objects wait for a reclaim round waits for one
// and tries again: backpressure, then ErrStoreFull.
func (b *Badger) admit(ctx context.Context, n int64) error {
	err := b.space.admit(n)
	if !b.rc.mayHelp(err) {
		return err
	}
	if _, werr := b.rc.wait(ctx, b.stop, true); werr != nil {
		return err
	}
	return b.space.admit(n)
}

// CheckSpace implements Store; like a write, it waits for a reclaim round
// if one may make room.
func (b *Badger) CheckSpace(n int64) error {
	err := b.space.check(n)
	if !b.rc.mayHelp(err) {
		return err
	}
	if _, werr := b.rc.wait(context.Background(), b.stop, true); werr != nil {
		return err
	}
	return b.space.check(n)
}

// mayHelp reports whether a round may make room for a write refused with
// err. (An in-memory store refuses nothing.)
func (rc *reclaimer) mayHelp(err error) bool {
	return errors.Is(err, ErrStoreFull) && rc.pending()
}

// background sweeps orphaned chunks and value files, then runs reclaim
// rounds until Close: every interval (if positive), and when asked.
func (b *Badger) background(interval time.Duration) {
	defer b.wg.Done()
	n, bytes, err := b.sweep()
	switch {
	case err != nil && !errors.Is(err, errStopped):
		b.log.Warn("store: sweeping orphaned chunks", "err", err, "deleted", n)
	case n > 0:
		b.log.Info("store: deleted orphaned chunks", "chunks", n)
		b.rc.noteDeleted(bytes)
	}
	switch n, bytes, err := b.sweepFiles(); {
	case err != nil && !errors.Is(err, errStopped):
		b.log.Warn("store: removing orphaned value files", "err", err, "removed", n)
	case n > 0:
		b.log.Info("store: removed orphaned value files", "files", n, "bytes", bytes)
	}
	close(b.swept)
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-b.stop:
			return
		case <-tick:
		case <-b.rc.kick:
		}
		b.reclaimRound()
	}
}

// reclaimRound runs one round (see the comment above reclaimKey).
func (b *Badger) reclaimRound() {
	rc := &b.rc
	start := time.Now()
	rc.mu.Lock()
	rc.started++
	st := ReclaimStats{Round: rc.started, Full: rc.full.Swap(false)}
	rc.mu.Unlock()
	st.Deleted = rc.deleted.Swap(0)
	st.Before, _ = DirUsage(b.dir)
	if st.Deleted > 0 {
		rc.sinceFlatten += st.Deleted
		if st.Err = b.flushMemtables(); st.Err == nil {
			st.Flushed = true
			if b.flattenDue() {
				if st.Err = b.db.Flatten(1); st.Err == nil {
					st.Flattened, rc.sinceFlatten = true, 0
				}
			}
		} else {
			rc.deleted.Add(st.Deleted) // try again next round
		}
	}
	ratio := gcDiscardRatio
	if st.Full {
		ratio = gcFullDiscardRatio
	}
	st.Rewritten = b.runGC(ratio)
	b.space.remeasure()
	st.After, _ = DirUsage(b.dir)
	st.Took = time.Since(start)
	if st.Err != nil {
		b.log.Warn("store: reclaim round", "err", st.Err)
	}
	if st.Flushed || st.Rewritten > 0 {
		b.log.Debug("store: reclaim round", "full", st.Full, "deleted", st.Deleted, "flattened", st.Flattened, "rewritten", st.Rewritten,
			"before", st.Before, "after", st.After, "took", st.Took)
	}
	rc.mu.Lock()
	rc.done, rc.last, rc.relaxed = st.Round, st, !st.Full
	close(rc.doneCh)
	rc.doneCh = make(chan struct{})
	rc.mu.Unlock()
	if rc.on != nil {
		rc.on(st)
	}
}

// flushMemtables flushes the memtables to level 0 and compacts level 0
// into the base level, dropping the sentinel written for it.
func (b *Badger) flushMemtables() error {
	b.wl.Lock()
	defer b.wl.Unlock()
	err := b.db.Update(func(txn *badger.Txn) error { return txn.Set(reclaimKey, nil) })
	if err == nil {
		err = b.db.DropPrefix(reclaimKey)
	}
	if err != nil {
		return fmt.Errorf("store: flushing memtables: %w", err)
	}
	return nil
}

// flattenDue reports whether the tree should be compacted into one level.
func (b *Badger) flattenDue() bool {
	var size int64
	levels := 0
	for _, l := range b.db.Levels() {
		size += l.Size
		if l.Level > 0 && l.Size > 0 {
			levels++
		}
	}
	return levels > 1 && b.rc.sinceFlatten >= size/flattenShare
}

// runGC rewrites value-log files until none has enough garbage. It returns
// the number of files rewritten.
func (b *Badger) runGC(ratio float64) int {
	n := 0
	for {
		select {
		case <-b.stop:
			return n
		default:
		}
		err := b.collectOne(ratio)
		if err == nil {
			n++
			continue
		}
		if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
			b.log.Warn("store: value log gc", "err", err)
		}
		return n
	}
}

// collectOne collects one value-log file, if one has enough garbage, with
// the store's writes held off: Badger's rewrite reads the memtable's
// highest version unsynchronised with writes (v4.9.6, its fix for
// badger#2286), a data race. The rewrite's own writes are its.
func (b *Badger) collectOne(ratio float64) error {
	b.wl.Lock()
	defer b.wl.Unlock()
	return b.db.RunValueLogGC(ratio)
}

var errStopped = errors.New("store: stopped")

// sweep deletes chunks of generations made by earlier runs that no record
// points at: left by a crash mid-write, or between the two steps of Delete.
// Generations of this run are never touched, so it can run concurrently
// with writes. It returns the chunks deleted and their bytes. (It runs
// before any reclaim round, in the same goroutine, so it needs no wl.)
func (b *Badger) sweep() (int, int64, error) {
	wb := b.db.NewWriteBatch()
	deleted := 0
	var bytes int64
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
			bytes += it.Item().ValueSize()
		}
		return nil
	})
	if err != nil {
		wb.Cancel()
		return deleted, bytes, err
	}
	return deleted, bytes, wb.Flush()
}
