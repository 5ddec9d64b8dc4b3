package objdir

import (
	"context"

	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

// maxQueued bounds the bytes of small values written behind their seal
// and not in the store yet: a seal past it waits for the write-behind, so
// a producer faster than the store is slowed to its pace (backpressure)
// instead of filling memory. Large values have a queue of their own, one
// value long: one is on its way to the store while the next is made, and
// small seals never wait behind a large write.
const maxQueued = 32 << 20

// admitBehind admits a value of n bytes (large: past InlineLimit) to the
// write-behind: it waits while its queue is full, then asks the store
// whether it could take the value with everything queued. If not, what is
// queued may be followed by the deletes of objects freed since: it waits
// for the write-behind to catch up and asks again, so a store full only of
// objects on their way out is not called full.
func (d *Dir) admitBehind(ctx context.Context, n int64, large bool) error {
	d.mu.Lock()
	for large && d.queuedLarge > 0 || !large && d.queued > 0 && d.queued+n > maxQueued {
		ch := d.behind
		d.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		d.mu.Lock()
	}
	queued := d.queued + d.queuedLarge
	d.mu.Unlock()
	err := d.st.CheckSpace(queued + n)
	if err == nil || queued == 0 {
		return err
	}
	if d.catchUp(ctx) != nil {
		return err
	}
	d.mu.Lock()
	queued = d.queued + d.queuedLarge
	d.mu.Unlock()
	return d.st.CheckSpace(queued + n)
}

// catchUp waits until the persist loop has done every job queued before
// the call.
func (d *Dir) catchUp(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case d.persistCh <- persistJob{barrier: done}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stepBehindLocked wakes whoever waits for the write-behind to move on.
func (d *Dir) stepBehindLocked() {
	close(d.behind)
	d.behind = make(chan struct{})
}

// pendingWrite is a large value's bytes on their way to the store.
type pendingWrite struct {
	meta store.Meta
	data []byte
}

// persistLarge writes a large value behind its seal, unless its object
// was freed (or sealed again) meanwhile: then nothing reaches the disk.
// Once stored its bytes leave memory; reads go to the store. A failed
// write keeps them in memory, the only copy (as for a small value).
func (d *Dir) persistLarge(j persistJob) {
	live, err := d.putIfLive(j, func() bool { return d.m[j.id] == j.large && j.large.writing != nil })
	d.mu.Lock()
	d.queuedLarge -= int64(len(j.data))
	switch ob := j.large; {
	case !live:
	case err != nil:
		if !ob.unpersistable {
			ob.unpersistable = true
			d.pinned += int64(len(j.data))
		}
	default:
		ob.writing = nil
	}
	d.stepBehindLocked()
	d.mu.Unlock()
}

// writingOf returns the bytes of id while they are being written behind.
func (d *Dir) writingOf(id ids.ObjectID) (*pendingWrite, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ob := d.m[id]; ob != nil && ob.ready && ob.writing != nil {
		return ob.writing, true
	}
	return nil, false
}
