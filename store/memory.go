package store

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/rayhost/rayhost/internal/ids"
)

// Memory is a Store that keeps objects in a map, for tests. It has the same
// semantics as Badger. The zero value is not usable; call NewMemory.
type Memory struct {
	mu     sync.RWMutex
	closed bool
	objs   map[ids.ObjectID]memObject
	quota  int64 // 0: none
	used   int64 // bytes of the values held
}

type memObject struct {
	meta Meta
	data []byte // never modified after insertion
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty Memory store.
func NewMemory() *Memory {
	return &Memory{objs: make(map[ids.ObjectID]memObject)}
}

// NewMemoryQuota returns an empty Memory store that holds at most quota
// bytes of values (0 is no limit): a write past it fails with ErrStoreFull,
// like a Badger store at its quota.
func NewMemoryQuota(quota int64) *Memory {
	m := NewMemory()
	m.quota = max(quota, 0)
	return m
}

// CheckSpace implements Store.
func (m *Memory) CheckSpace(n int64) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.checkLocked(n)
}

func (m *Memory) checkLocked(n int64) error {
	if m.quota > 0 && m.used+max(n, 0) > m.quota {
		return fmt.Errorf("%w: the store holds %d bytes of its quota of %d, a write of %d does not fit", ErrStoreFull, m.used, m.quota, n)
	}
	return nil
}

// Len returns the number of objects stored.
func (m *Memory) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.objs)
}

// Put implements Store.
func (m *Memory) Put(ctx context.Context, id ids.ObjectID, meta Meta, data []byte) error {
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
	return m.insert(id, meta, slices.Clone(data))
}

// insert stores an object unless one with the id exists.
func (m *Memory) insert(id ids.ObjectID, meta Meta, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if _, ok := m.objs[id]; !ok {
		if err := m.checkLocked(int64(len(data))); err != nil {
			return fmt.Errorf("store: put %s: %w", id, err)
		}
		m.objs[id] = memObject{meta: meta, data: data}
		m.used += int64(len(data))
	}
	return nil
}

func (m *Memory) lookup(ctx context.Context, op string, id ids.ObjectID) (memObject, error) {
	if err := ctxErr(ctx, op, id); err != nil {
		return memObject{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return memObject{}, ErrClosed
	}
	o, ok := m.objs[id]
	if !ok {
		return memObject{}, notFound(id)
	}
	return o, nil
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, id ids.ObjectID) (Meta, []byte, error) {
	o, err := m.lookup(ctx, "get", id)
	if err != nil {
		return Meta{}, nil, err
	}
	data := make([]byte, len(o.data))
	copy(data, o.data)
	return o.meta, data, nil
}

// Stat implements Store.
func (m *Memory) Stat(ctx context.Context, id ids.ObjectID) (Meta, error) {
	o, err := m.lookup(ctx, "stat", id)
	return o.meta, err
}

// Open implements Store.
func (m *Memory) Open(ctx context.Context, id ids.ObjectID) (Meta, io.ReadCloser, error) {
	o, err := m.lookup(ctx, "open", id)
	if err != nil {
		return Meta{}, nil, err
	}
	return o.meta, &memReader{m: m, data: o.data}, nil
}

// Delete implements Store.
func (m *Memory) Delete(ctx context.Context, id ids.ObjectID) error {
	if err := ctxErr(ctx, "delete", id); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	o, ok := m.objs[id]
	if !ok {
		return notFound(id)
	}
	m.used -= int64(len(o.data))
	delete(m.objs, id)
	return nil
}

// Close implements Store.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		m.objs = nil
	}
	return nil
}

func (m *Memory) isClosed() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.closed
}

// Create implements Store.
func (m *Memory) Create(ctx context.Context, id ids.ObjectID, meta Meta) (Writer, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if err := ctxErr(ctx, "create", id); err != nil {
		return nil, err
	}
	if m.isClosed() {
		return nil, ErrClosed
	}
	return &memWriter{m: m, id: id, meta: meta}, nil
}

type memWriter struct {
	m    *Memory
	id   ids.ObjectID
	meta Meta
	buf  []byte
	done bool
}

func (w *memWriter) Write(p []byte) (int, error) {
	if w.m.isClosed() {
		return 0, ErrClosed
	}
	if w.done {
		return 0, ErrAborted
	}
	if n := int64(len(w.buf)) + int64(len(p)); w.meta.Size >= 0 && n > w.meta.Size {
		return 0, sizeMismatch(w.id, w.meta.Size, n)
	}
	if err := w.m.CheckSpace(int64(len(w.buf)) + int64(len(p))); err != nil {
		return 0, fmt.Errorf("store: write %s: %w", w.id, err)
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

func (w *memWriter) Commit(ctx context.Context) error {
	if w.m.isClosed() {
		_ = w.Abort()
		return ErrClosed
	}
	if w.done {
		return ErrAborted
	}
	w.done = true
	data := w.buf
	w.buf = nil
	if err := ctxErr(ctx, "commit", w.id); err != nil {
		return err
	}
	if w.meta.Size >= 0 && w.meta.Size != int64(len(data)) {
		return sizeMismatch(w.id, w.meta.Size, int64(len(data)))
	}
	meta := w.meta
	meta.Size = int64(len(data))
	meta = normalize(meta, time.Now())
	return w.m.insert(w.id, meta, data)
}

func (w *memWriter) Abort() error {
	w.done = true
	w.buf = nil
	return nil
}

type memReader struct {
	m      *Memory
	data   []byte // shared with the store; never modified
	closed bool
}

func (r *memReader) Read(p []byte) (int, error) {
	if r.closed || r.m.isClosed() {
		return 0, ErrClosed
	}
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func (r *memReader) Close() error {
	r.closed = true
	return nil
}
