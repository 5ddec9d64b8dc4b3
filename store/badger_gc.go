// This file holds the Badger store's background work: the sweep of
// orphaned chunks at open, and value-log GC.

package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/rayhost/rayhost/internal/ids"
)

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
