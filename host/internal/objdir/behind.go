package objdir

import "context"

// maxQueued bounds the bytes of small values written behind their seal
// and not in the store yet: a seal past it waits for the write-behind, so
// a producer faster than the store is slowed to its pace (backpressure)
// instead of filling memory.
const maxQueued = 32 << 20

// admitBehind admits a small value of n bytes to the write-behind: it
// waits while the queue is past maxQueued, then asks the store whether it
// could take the value with what is queued. If not, what is queued may be
// followed by the deletes of objects freed since: it waits for the
// write-behind to catch up and asks again, so a store full only of
// objects on their way out is not called full.
func (d *Dir) admitBehind(ctx context.Context, n int64) error {
	d.mu.Lock()
	for d.queued > 0 && d.queued+n > maxQueued {
		ch := d.behind
		d.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		d.mu.Lock()
	}
	queued := d.queued
	d.mu.Unlock()
	err := d.st.CheckSpace(queued + n)
	if err == nil || queued == 0 {
		return err
	}
	if d.catchUp(ctx) != nil {
		return err
	}
	d.mu.Lock()
	queued = d.queued
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
