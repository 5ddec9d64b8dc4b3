package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/rayhost/rayhost/internal/ids"
)

// Codec says how an object's bytes encode its value.
type Codec uint8

const (
	// CodecJSON means the bytes are JSON text.
	CodecJSON Codec = 0
	// CodecRaw means the bytes are a raw byte string ([]byte in Go), stored as is.
	CodecRaw Codec = 1
)

// String returns "json", "raw", or "codec(N)" for other values.
func (c Codec) String() string {
	switch c {
	case CodecJSON:
		return "json"
	case CodecRaw:
		return "raw"
	default:
		return "codec(" + strconv.Itoa(int(c)) + ")"
	}
}

// Meta describes a stored object.
type Meta struct {
	// Size is the number of bytes of the value. On Put and Create a negative
	// Size means "unknown"; the store then records the actual size. A Size
	// >= 0 must match the bytes written, or the write fails with
	// ErrSizeMismatch. Metadata returned by a Store always has the actual size.
	Size int64
	// Codec says how the bytes encode the value. The store does not
	// interpret it.
	Codec Codec
	// Owner is the address of the host that owns the object (Ray ownership).
	Owner string
	// Task is the task that created the object (zero if unknown).
	Task ids.TaskID
	// Created is when the object was created. If zero on Put or Create, the
	// store sets it to the time of the write. Stores return it in UTC
	// without a monotonic clock reading.
	Created time.Time
}

var (
	// ErrNotFound is returned when no committed object has the id.
	ErrNotFound = errors.New("store: object not found")
	// ErrClosed is returned by operations on a closed store, and by writers
	// and readers of a store that has been closed since they were made.
	ErrClosed = errors.New("store: closed")
	// ErrAborted is returned when writing to, or committing, a Writer that
	// was already aborted or committed.
	ErrAborted = errors.New("store: write aborted")
	// ErrSizeMismatch is returned when a write declares Meta.Size >= 0 and
	// the number of bytes written differs from it. A Writer returns it from
	// Write when the bytes would exceed the declared size, and from Commit
	// when they differ; the object is then not stored.
	ErrSizeMismatch = errors.New("store: size mismatch")
	// ErrCorrupt is returned when stored bytes cannot be decoded, or an
	// object's chunks do not match its metadata.
	ErrCorrupt = errors.New("store: corrupt object")
	// ErrInvalidConfig is returned by OpenBadger for a bad BadgerConfig.
	ErrInvalidConfig = errors.New("store: invalid config")
)

// Store keeps immutable objects keyed by ObjectID. Implementations are safe
// for concurrent use.
//
// Writes of the zero ObjectID fail with an error wrapping ids.ErrInvalidID.
type Store interface {
	// Put stores an object. Objects are immutable: putting an id that exists
	// succeeds and keeps the first value (and its metadata). The store does
	// not keep a reference to data after Put returns.
	Put(ctx context.Context, id ids.ObjectID, meta Meta, data []byte) error
	// Get returns the whole value (a fresh slice the caller owns).
	Get(ctx context.Context, id ids.ObjectID) (Meta, []byte, error)
	// Stat returns the metadata only.
	Stat(ctx context.Context, id ids.ObjectID) (Meta, error)
	// Open returns a reader over the value that reads chunk by chunk (never
	// holds the whole value in memory for large objects). The caller must
	// close it. After the store is closed, Read returns ErrClosed; reading an
	// object deleted meanwhile may fail with ErrNotFound.
	Open(ctx context.Context, id ids.ObjectID) (Meta, io.ReadCloser, error)
	// Create starts a streaming write; the object becomes visible only at
	// Commit. meta.Size may be -1 if unknown (then Commit sets it). If the
	// object already exists, the writer accepts and discards the bytes and
	// Commit succeeds, keeping the first value.
	Create(ctx context.Context, id ids.ObjectID, meta Meta) (Writer, error)
	// Delete removes an object. It returns ErrNotFound if there is none.
	// After Delete the id may be put again.
	Delete(ctx context.Context, id ids.ObjectID) error
	// Close releases the store. Writers not yet committed are aborted.
	// Close is idempotent; later calls return nil.
	Close() error
	// CheckSpace returns an error wrapping ErrStoreFull if a write of n
	// bytes would not be admitted now (see BadgerConfig.Quota and Reserve),
	// without writing anything. Writes check for themselves; CheckSpace is
	// for callers that keep a value in memory and write it later.
	CheckSpace(n int64) error
}

// Writer streams the bytes of one object into a Store. A Writer is not safe
// for concurrent use by several goroutines.
//
// A Writer is finished once Commit returns (whether or not it succeeded) or
// Abort is called. Write and Commit on a finished writer return ErrAborted;
// Abort on a finished writer is a no-op returning nil, so
//
//	w, err := s.Create(ctx, id, meta)
//	if err != nil { ... }
//	defer w.Abort()
//	... w.Write ...
//	return w.Commit(ctx)
//
// is the usual pattern.
type Writer interface {
	io.Writer
	// Commit makes the object visible.
	Commit(ctx context.Context) error
	// Abort discards the bytes written.
	Abort() error
}

// checkID rejects the zero ObjectID on writes.
func checkID(id ids.ObjectID) error {
	if id.IsZero() {
		return fmt.Errorf("store: %w: zero object id", ids.ErrInvalidID)
	}
	return nil
}

// normalize prepares meta for storing: it fills Created if zero and drops
// the location and monotonic reading. It does not touch Size.
func normalize(meta Meta, now time.Time) Meta {
	if meta.Created.IsZero() {
		meta.Created = now
	}
	meta.Created = meta.Created.UTC()
	return meta
}

// sizeMismatch reports a declared size that differs from the bytes written.
func sizeMismatch(id ids.ObjectID, declared, written int64) error {
	return fmt.Errorf("%w: object %s: declared %d bytes, wrote %d", ErrSizeMismatch, id, declared, written)
}

func notFound(id ids.ObjectID) error {
	return fmt.Errorf("%w: %s", ErrNotFound, id)
}

// ctxErr returns ctx's error wrapped with the operation, or nil.
func ctxErr(ctx context.Context, op string, id ids.ObjectID) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: %s %s: %w", op, id, err)
	}
	return nil
}
