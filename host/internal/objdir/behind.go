package objdir

import (
	"context"
	"time"

	"github.com/rayhost/rayhost/internal/clock"

	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

// maxQueued bounds the bytes of small values written behind their seal
// and not in the store yet: a seal past it waits for the write-behind, so
// a producer faster than the store is slowed to its pace (backpressure)
// instead of filling memory. Large values have a bound of their own,
// Config.LargeMemoryBytes, and small seals never wait behind a large write.
const maxQueued = 32 << 20

// The memory tier of large values. A large value is ready at its seal and
// read from memory; it is written to the store only once it has lived
// Config.PersistAfter, or sooner when memory is short: the unhanded bytes
// are past half of Config.LargeMemoryBytes, or a seal waits for room. One
// freed before that is never written (Ray's plasma store keeps objects in
// shared memory and spills them only under pressure). The feeder goroutine
// hands the due ones to the persist loop, which writes them in order with
// the deletes of freed objects; once stored their bytes leave memory.
const (
	// DefaultLargeMemoryBytes is Config.LargeMemoryBytes's default.
	DefaultLargeMemoryBytes = 1 << 30
	// DefaultPersistAfter is Config.PersistAfter's default.
	DefaultPersistAfter = time.Second
)

// deferredWrite is a large value waiting for its write: the object it was
// sealed as (its bytes are ob.writing's; nil once freed).
type deferredWrite struct {
	id ids.ObjectID
	ob *object
}

// admitBehind admits a value of n bytes (large: past InlineLimit) to the
// write-behind: it waits while its queue is full, then asks the store
// whether it could take the value with everything queued. If not, what is
// queued may be followed by the deletes of objects freed since: it waits
// for the write-behind to catch up and asks again, so a store full only of
// objects on their way out is not called full.
//
// A value admitted has its room taken at once (counted in queuedLarge or
// queued, under the lock that checked it): seals admitted together cannot
// take the tier or the queue past its bound before any of them is
// counted. The caller gives the room back with unadmitLocked if it does
// not seal it; a refused one has none.
func (d *Dir) admitBehind(ctx context.Context, n int64, large bool) error {
	d.mu.Lock()
	if large {
		d.evictLargeLocked(n) // stored copies make room at once
	}
	for large && d.queuedLarge > 0 && d.queuedLarge+n > d.cfg.LargeMemoryBytes || !large && d.queued > 0 && d.queued+n > maxQueued {
		ch := d.behind
		var spilled []persistJob
		if large && d.unhanded > 0 {
			// Memory is short: write what waits, now.
			spilled, _ = d.dueLargeLocked(d.cfg.Clock.Now(), true)
		} else if !large {
			// The queue is past half of maxQueued: dueSmallLocked hands
			// every small write.
			spilled, _ = d.dueSmallLocked(d.cfg.Clock.Now(), true)
		}
		d.mu.Unlock()
		d.handLarge(spilled)
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		d.mu.Lock()
		if large {
			d.evictLargeLocked(n)
		}
	}
	queued := d.queued + d.queuedLarge
	if large { // taken: see above
		d.queuedLarge += n
	} else {
		d.queued += n
	}
	d.mu.Unlock()
	err := d.st.CheckSpace(queued + n)
	if err != nil && queued > 0 && d.catchUp(ctx) == nil {
		d.mu.Lock()
		queued = d.queued + d.queuedLarge - n // without its own room
		d.mu.Unlock()
		err = d.st.CheckSpace(queued + n)
	}
	if err != nil {
		d.mu.Lock()
		d.unadmitLocked(n, large)
		d.mu.Unlock()
	}
	return err
}

// unadmitLocked gives back the room of a value admitted and not sealed
// after all.
func (d *Dir) unadmitLocked(n int64, large bool) {
	if large {
		d.queuedLarge -= n
	} else {
		d.queued -= n
	}
	d.stepBehindLocked()
}

// catchUp waits until the persist loop has done every job queued before
// the call.
func (d *Dir) catchUp(ctx context.Context) error {
	done := make(chan struct{})
	d.handMu.RLock()
	if d.handClosed {
		d.handMu.RUnlock()
		return ErrClosed
	}
	select {
	case d.persistCh <- persistJob{barrier: done}:
		d.handMu.RUnlock()
	case <-ctx.Done():
		d.handMu.RUnlock()
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

// pendingWrite is a large value's bytes in memory: on their way to the
// store, then, once stored, kept while the memory tier has room.
type pendingWrite struct {
	meta store.Meta
	data []byte
	at   time.Time // sealed
	// handed: its job is in the persist loop's queue (no longer deferred).
	handed bool
	// stored: the store has the bytes; these are a copy, dropped first
	// when the tier needs room (evictLargeLocked).
	stored bool
}

// storedWrite is a stored large value kept in memory (Dir.cachedLarge).
type storedWrite struct {
	id ids.ObjectID
	ob *object
	w  *pendingWrite
}

// evictLargeLocked drops the oldest stored large values from memory while
// the tier's bytes and need more are past LargeMemoryBytes: their reads
// go to the store from then on.
func (d *Dir) evictLargeLocked(need int64) {
	for d.largeMem+need > d.cfg.LargeMemoryBytes && len(d.cachedLarge) > 0 {
		c := d.cachedLarge[0]
		d.cachedLarge[0] = storedWrite{}
		d.cachedLarge = d.cachedLarge[1:]
		if d.m[c.id] == c.ob && c.ob.writing == c.w {
			c.ob.writing = nil
			d.largeMem -= int64(len(c.w.data))
		}
	}
	if len(d.cachedLarge) == 0 {
		d.cachedLarge = nil
	}
}

// wakeFeeder wakes the feeder to look at the deferred writes again.
func (d *Dir) wakeFeeder() {
	select {
	case d.feedWake <- struct{}{}:
	default:
	}
}

// feedLoop hands the deferred large writes to the persist loop as they
// fall due, until Close has had them all handed.
func (d *Dir) feedLoop() {
	defer d.fed.Done()
	for {
		d.mu.Lock()
		closing := d.closing
		jobs, next := d.dueLocked(d.cfg.Clock.Now(), closing)
		d.mu.Unlock()
		d.handLarge(jobs)
		if closing {
			return
		}
		var t clock.Timer
		if next > 0 {
			t = d.cfg.Clock.AfterFunc(next, d.wakeFeeder)
		}
		<-d.feedWake
		if t != nil {
			t.Stop()
		}
	}
}

// handLarge queues the jobs dueLargeLocked took.
func (d *Dir) handLarge(jobs []persistJob) {
	for _, j := range jobs {
		d.hand(j)
	}
}

// smallWrite is a small value's write waiting in Dir.deferredSmall.
type smallWrite struct {
	job persistJob
	at  time.Time // sealed
}

// dueLocked takes the deferred writes to start now, of large values
// (dueLargeLocked) and of small ones (dueSmallLocked), and how long until
// the next one falls due (0: none is left).
func (d *Dir) dueLocked(now time.Time, all bool) ([]persistJob, time.Duration) {
	jobs, next := d.dueLargeLocked(now, all)
	small, nextSmall := d.dueSmallLocked(now, all)
	if next == 0 || nextSmall > 0 && nextSmall < next {
		next = nextSmall
	}
	return append(jobs, small...), next
}

// dueSmallLocked takes the small values' writes to start now: those whose
// object has lived PersistAfter, and all of them while the queue is past
// half of maxQueued, the cache past CacheBytes (only stored values can be
// evicted), or all is set. Most small objects (a task's result read once,
// a put dropped) are freed younger: never written, never deleted.
func (d *Dir) dueSmallLocked(now time.Time, all bool) (jobs []persistJob, next time.Duration) {
	all = all || d.queued > maxQueued/2 || d.memBytes > d.cfg.CacheBytes
	// Taken from the front by an index (smallHead), the rest moved to the
	// front once it is no longer than what was taken: the queue keeps its
	// array. (A slice resliced from the front and appended to is copied to
	// a new, cleared array every few seals: 14% of a host's CPU at 13k
	// tasks/s.)
	defer func() {
		if h := d.smallHead; h > 0 && h >= len(d.deferredSmall)-h {
			n := copy(d.deferredSmall, d.deferredSmall[h:])
			clear(d.deferredSmall[n:])
			d.deferredSmall, d.smallHead = d.deferredSmall[:n], 0
		}
	}()
	for ; d.smallHead < len(d.deferredSmall); d.smallHead++ {
		sw := &d.deferredSmall[d.smallHead]
		if sw.job.ob.deferred {
			due := sw.at.Add(d.cfg.PersistAfter)
			if !all && now.Before(due) {
				return jobs, due.Sub(now)
			}
			sw.job.ob.deferred = false
			jobs = append(jobs, sw.job)
		}
		*sw = smallWrite{}
	}
	return jobs, 0
}

// dueLargeLocked takes the deferred writes to start now: the oldest whose
// object has lived PersistAfter, and more while memory is short; all of
// them if all is set (a seal waits for room, or the Dir closes). It
// returns their jobs and how long until the next one falls due (0: none
// is left).
func (d *Dir) dueLargeLocked(now time.Time, all bool) (jobs []persistJob, next time.Duration) {
	for len(d.deferred) > 0 {
		dw := d.deferred[0]
		w := dw.ob.writing
		if d.m[dw.id] == dw.ob && w != nil && !w.handed {
			due := w.at.Add(d.cfg.PersistAfter)
			if !all && now.Before(due) && d.unhanded <= d.cfg.LargeMemoryBytes/2 {
				return jobs, due.Sub(now)
			}
			w.handed = true
			d.unhanded -= int64(len(w.data))
			jobs = append(jobs, persistJob{id: dw.id, meta: w.meta, data: w.data, large: dw.ob})
		}
		d.deferred[0] = deferredWrite{}
		d.deferred = d.deferred[1:]
	}
	d.deferred = nil
	return jobs, 0
}

// persistLarge writes a large value behind its seal, unless its object
// was freed (or sealed again) meanwhile: then nothing reaches the disk.
// Once stored its bytes stay in memory while the tier has room (reads are
// served from there), and are the first to go when it needs room. A
// failed write keeps them in memory, the only copy (as for a small value).
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
		if w := ob.writing; w != nil {
			w.stored = true
			d.cachedLarge = append(d.cachedLarge, storedWrite{id: j.id, ob: ob, w: w})
			d.evictLargeLocked(0)
		}
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
