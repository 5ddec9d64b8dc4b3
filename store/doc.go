// Package store keeps a host's immutable objects (task results and put
// values), keyed by ids.ObjectID.
//
// Store is the interface; Badger keeps objects in a Badger database on disk
// (or in memory), and Memory keeps them in a map, for tests. Both have the
// same semantics:
//
//   - Objects are immutable. Putting an id that exists succeeds and keeps
//     the first value and metadata.
//   - A streaming write (Create, Write..., Commit) becomes visible only at
//     Commit; an aborted or failed write leaves nothing behind.
//   - Get returns a fresh copy; Open streams the value chunk by chunk, so a
//     large object is never held in memory whole.
//   - Missing objects give ErrNotFound, and operations on a closed store
//     ErrClosed.
//
// Badger stores objects of up to 16 KiB inside their metadata record,
// objects of at least BadgerConfig.FileThreshold (256 KiB by default) as
// files of their own under Dir/blobs, and those between in chunks (1 MiB
// by default) in Badger. Chunks and files are written before the metadata,
// so that a crash never exposes a partial object; files and chunks no
// record points at are removed when the store opens. A file's record
// holds its CRC-32C: a damaged, short or long file reads as ErrCorrupt. A
// file is removed by Delete, so its space is back at once; a reader
// opened before the Delete reads the value it opened to its end.
//
// Deleted objects kept in Badger give their space back on disk through
// reclaim rounds (Badger.Reclaim, ReclaimStats): Badger alone keeps a
// deleted object's bytes until its memtable fills with keys, which may be
// never.
// A round flushes the memtables, compacts the tree when deletes warrant
// it, and collects value-log files; rounds run every GCInterval, after
// ReclaimAfter bytes are deleted, and when a write finds the store full
// while deleted objects wait (the write waits for the round).
//
// Space: a Badger store on disk may have a quota (BadgerConfig.Quota, the
// space its files take) and keeps a free-space reserve on its filesystem
// (BadgerConfig.Reserve, at least MinReserve). Every write is admitted
// against both first (after a reclaim round, if one may make room); past
// either it fails with ErrStoreFull, while reads, deletes and reopening
// keep working. The reserve covers the writes Badger makes on its own into
// memory-mapped files, so a full disk is an error, never a SIGBUS (see
// MinReserve). CheckSpace asks without writing.
//
// Usage:
//
//	s, err := store.OpenBadger(store.DefaultBadgerConfig("/var/lib/rayhost/objects"))
//	if err != nil {
//		return err
//	}
//	defer s.Close()
//
//	id := task.Return(0)
//	meta := store.Meta{Size: -1, Codec: store.CodecRaw, Owner: "10.0.0.7:7070", Task: task}
//	w, err := s.Create(ctx, id, meta)
//	if err != nil {
//		return err
//	}
//	defer w.Abort() // no-op after Commit
//	if _, err := io.Copy(w, src); err != nil {
//		return err
//	}
//	if err := w.Commit(ctx); err != nil {
//		return err
//	}
//
//	meta, r, err := s.Open(ctx, id)
//	if err != nil {
//		return err // errors.Is(err, store.ErrNotFound) if there is no such object
//	}
//	defer r.Close()
//	_, err = io.Copy(dst, r)
package store
