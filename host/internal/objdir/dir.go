package objdir

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/clock"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

// Config configures a Dir. Start from DefaultConfig.
type Config struct {
	// Store keeps the bytes of objects (required). The Dir does not close it.
	Store store.Store
	// InlineLimit: values of up to this many bytes are kept in memory (and
	// written to the store behind the caller's back); larger ones are
	// written behind too, one at a time, and leave memory once stored
	// (and go to peers in chunks, never inline).
	InlineLimit int
	// CacheBytes bounds the in-memory copies of small objects, each
	// counted with its record (objectOverhead): past it, the oldest ones
	// already in the store are dropped from memory.
	CacheBytes int64
	// Self is this host's API address: the owner recorded with the objects
	// it stores, and the holder it never pulls from.
	Self string
	// ID is this host's name, in the errors it reports to peers.
	ID string
	// Peers reaches the other hosts of a cluster; nil outside one (then
	// objects held elsewhere are lost, and Borrow does nothing).
	Peers Peers
	// Rebuild rebuilds an object this host owns whose every copy is gone
	// (lineage reconstruction): it returns once the object is pending again
	// (after Reset), or an error wrapping ErrLost or ErrOwnerDied. Nil: such
	// objects are lost.
	Rebuild func(id ids.ObjectID) error
	// Restarted: the store served this host before (it restarted on its
	// data dir). An object of its own it has no record of then died with
	// its earlier life: owner_died, not not_found (restart.go).
	Restarted bool
	// Done, when closed, ends the background work of borrows (the host is
	// shutting down). Close ends it too. May be nil.
	Done <-chan struct{}
	// UnknownGrace is how long an owner may say it does not know an object
	// before the object counts as not found (an ObjectRef can reach a host
	// before its owner registered it). Default 10 s.
	UnknownGrace time.Duration
	// ChunkBytes is the size of the chunks Stream and Serve send.
	ChunkBytes int
	// LargeMemoryBytes bounds the bytes of large values held in memory
	// before they reach the store (the memory tier, behind.go): past half
	// of it the oldest are written at once, and a seal that would go past
	// it waits for the writes. One value larger than it is still taken,
	// alone. 0 holds none: each is written as soon as it is sealed, one at
	// a time.
	LargeMemoryBytes int64
	// PersistAfter is how long a value lives in memory before it is
	// written to the store: one freed sooner (most are: a put read once,
	// an intermediate result) never reaches the disk, and costs no delete
	// either. Small values are written sooner while the write-behind is
	// past half of its bound or the cache past CacheBytes; large ones as
	// LargeMemoryBytes says. 0 writes at once.
	PersistAfter time.Duration
	// PullIdle is how long a pull from another host may go without a
	// byte (the header included) before it is given up as stalled — a
	// holder that is alive but sends nothing — and the next holder is
	// tried. A stall is noticed between PullIdle and twice it. Default 30 s.
	PullIdle time.Duration
	// Clock times PersistAfter and PullIdle (nil: the system's).
	Clock clock.Clock
	// Logger gets the directory's logs (nil: discarded).
	Logger *slog.Logger
}

// DefaultConfig returns a Config over st with the host's default limits.
func DefaultConfig(st store.Store) Config {
	return Config{Store: st, InlineLimit: 100 << 10, CacheBytes: 256 << 20, ChunkBytes: 1 << 20, UnknownGrace: unknownGrace,
		LargeMemoryBytes: DefaultLargeMemoryBytes, PersistAfter: DefaultPersistAfter}
}

func (c *Config) validate() error {
	switch {
	case c.Store == nil:
		return fmt.Errorf("%w: no Store", ErrInvalidConfig)
	case c.InlineLimit < 0 || c.CacheBytes < 0 || c.ChunkBytes < 0 || c.UnknownGrace < 0 || c.PullIdle < 0:
		return fmt.Errorf("%w: InlineLimit, CacheBytes, ChunkBytes, UnknownGrace and PullIdle must be >= 0", ErrInvalidConfig)
	case c.LargeMemoryBytes < 0 || c.PersistAfter < 0:
		return fmt.Errorf("%w: LargeMemoryBytes and PersistAfter must be >= 0", ErrInvalidConfig)
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.UnknownGrace == 0 {
		c.UnknownGrace = unknownGrace
	}
	if c.PullIdle == 0 {
		c.PullIdle = defaultPullIdle
	}
	if c.ChunkBytes == 0 {
		c.ChunkBytes = 1 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Dir is a host's directory of the objects it owns or holds: which are
// still being computed, which are ready, and where their bytes are. It is
// safe for concurrent use; its lock is its own, and it never calls out
// (waiters, Peers, Rebuild, the store) with it held.
type Dir struct {
	cfg Config
	st  store.Store
	log *slog.Logger
	// remote reaches objects on other hosts (its own lock).
	remote *remote

	mu       sync.Mutex
	m        map[ids.ObjectID]*object
	fifo     []ids.ObjectID // ready in-memory objects, oldest first
	fifoHead int
	memBytes int64
	queued   int64 // bytes in persistCh: admitted by CheckSpace, not yet stored
	// queuedLarge: the same, of large values (behind.go): in memory,
	// waiting for their write (deferred) or being written.
	queuedLarge int64
	// deferred: the large values not handed to the persist loop yet,
	// oldest first (some freed since); unhanded: their live bytes.
	// closing: Close hands them all.
	deferred []deferredWrite
	unhanded int64
	closing  bool
	// sealing counts the seals in flight (one may wait for room, or for
	// a delete, when Close comes); sealed is signalled (with mu) as one
	// ends. Close waits for them before it stops the persist loop.
	sealing int
	sealed  *sync.Cond
	// largeMem: the bytes of large values in memory (ob.writing), stored
	// or not; cachedLarge: the stored ones, oldest first (some dropped
	// since), dropped from memory first when the tier needs room.
	largeMem    int64
	cachedLarge []storedWrite
	// deferredSmall: the small values' writes not handed to the persist
	// loop yet, oldest first (some freed since: ob.deferred false), from
	// index smallHead on (those before it are taken).
	deferredSmall []smallWrite
	smallHead     int
	feedWake      chan struct{} // wakes the feeder (cap 1)
	fed           sync.WaitGroup
	behind        chan struct{} // closed (and replaced) as the persist loop ends a job
	pinned        int64         // bytes of failures the full store refused, kept in memory only
	persistCh     chan persistJob
	// handMu guards sends on persistCh against Close closing it: a send
	// holds it for reading; handClosed is set, with it held for writing,
	// as persistCh is closed (hand.go).
	handMu     sync.RWMutex
	handClosed bool
	freed      tombstones // objects freed lately
	// deleting counts the store deletes queued per freed object;
	// deletedCond is signalled (with mu) when one is done.
	deleting    map[ids.ObjectID]int
	deletedCond *sync.Cond
	frees       uint64         // objects freed so far
	persisted   sync.WaitGroup // the persist loop
	closeOnce   sync.Once
	// restarted is Config.Restarted: the store served this host before
	// (restart.go).
	restarted bool
	// copies: hosts that may keep a copy of an object of this host's,
	// told when it is freed; toFree: the FreeCopies to send, by host;
	// freeing: a sender runs (copies.go). dropped counts copies deleted.
	copies  map[ids.ObjectID][]string
	toFree  map[string][]ids.ObjectID
	freeing bool
	dropped uint64
}

type object struct {
	ready     bool
	fetched   bool      // someone got the value (for unhandled-error reports)
	val       abi.Value // Data is nil when the bytes live only in the store
	inMemory  bool
	persisted bool
	// unpersistable: the write-behind failed (a full store); the value
	// lives in memory only and is never evicted.
	unpersistable bool
	task          ids.TaskID
	waiters       []*waiter
	// holders are the hosts (API addresses) that hold the bytes of a value
	// that is neither in memory nor in the local store.
	holders []string
	size    int64
	// owner is set for an object another host owns (borrowed): this host
	// learnt of it through an ObjectRef and asks the owner about it.
	owner string
	// freed: nothing references this pending object any more; its value
	// is dropped when it is sealed.
	freed bool
	// provisional: a borrowed object ready with a failure that says where
	// it is, not what it is (its owner could not be reached, or said it is
	// lost): in memory only, never stored, and asked again (provisional.go).
	provisional bool
	// keptFor: this host keeps the value for its owner (SealFor): its
	// bytes may be the only ones, so only the owner's free deletes them.
	keptFor bool
	// deferred: a small value's write waits in Dir.deferredSmall (not
	// handed to the persist loop yet): freed now, it is never written, so
	// there is nothing to delete either.
	deferred bool
	// writing: a large value's bytes in memory (behind.go): on their way
	// to the store behind its seal, then kept while the memory tier has
	// room; reads take them from here. nil once dropped (or freed): then
	// they are read from the store.
	writing *pendingWrite
}

type persistJob struct {
	id   ids.ObjectID
	meta store.Meta
	data []byte
	// large: the job of a large value, written only if ob is still the
	// object of id (not freed, not sealed again since) — a large object
	// freed before its turn never touches the disk.
	large *object
	// ob, for a small value, is the object it was sealed as: written only
	// if it still is id's object — a small object freed before its turn
	// (most are, in a loop of puts or tasks whose refs are dropped) costs
	// no write and no delete's tombstone.
	ob  *object
	del bool // delete the object (freed) instead
	// barrier, if set, is closed when the loop reaches the job: every job
	// queued before it is done.
	barrier chan struct{}
}

// New returns a Dir, and starts the loop that writes small values to the
// store behind their seal. Close stops it.
func New(cfg Config) (*Dir, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	d := &Dir{
		cfg: cfg, st: cfg.Store, log: cfg.Logger,
		m: map[ids.ObjectID]*object{}, deleting: map[ids.ObjectID]int{}, persistCh: make(chan persistJob, 4096),
		copies: map[ids.ObjectID][]string{}, toFree: map[string][]ids.ObjectID{},
		behind: make(chan struct{}), feedWake: make(chan struct{}, 1),
	}
	d.deletedCond = sync.NewCond(&d.mu)
	d.sealed = sync.NewCond(&d.mu)
	d.remote = &remote{d: d, peers: cfg.Peers, stop: make(chan struct{})}
	d.restarted = cfg.Restarted
	d.persisted.Add(1)
	go d.persistLoop()
	d.fed.Add(1)
	go d.feedLoop()
	return d, nil
}

// Close ends background resolves, then waits until every sealed object is
// in the store: also those of seals in flight (waiting for room, say),
// which hand their writes on themselves once the feeder has stopped. No
// Seal may start after it.
func (d *Dir) Close() {
	d.closeOnce.Do(func() {
		d.remote.close()
		d.mu.Lock()
		d.closing = true
		d.mu.Unlock()
		d.wakeFeeder()
		d.fed.Wait()
		d.mu.Lock()
		for d.sealing > 0 {
			d.sealed.Wait()
		}
		d.mu.Unlock()
		d.handMu.Lock()
		d.handClosed = true
		close(d.persistCh)
		d.handMu.Unlock()
		d.persisted.Wait()
	})
}

func (d *Dir) persistLoop() {
	defer d.persisted.Done()
	for j := range d.persistCh {
		if j.barrier != nil {
			close(j.barrier)
			continue
		}
		if j.del {
			if err := d.st.Delete(context.Background(), j.id); err != nil && !errors.Is(err, store.ErrNotFound) {
				d.log.Error("deleting a freed object", "object_id", j.id, "err", err)
			}
			d.mu.Lock()
			if d.deleting[j.id]--; d.deleting[j.id] <= 0 {
				delete(d.deleting, j.id)
			}
			d.deletedCond.Broadcast()
			d.stepBehindLocked()
			d.mu.Unlock()
			continue
		}
		if j.large != nil {
			d.persistLarge(j)
			continue
		}
		live, err := d.putIfLive(j, func() bool { return j.ob == nil || d.m[j.id] == j.ob })
		d.mu.Lock()
		d.queued -= int64(len(j.data))
		if !live {
			// Freed (or sealed again) before its turn: nothing to write.
		} else if err != nil {
			if ob := d.m[j.id]; ob != nil && !ob.unpersistable {
				ob.unpersistable = true // the only copy: kept in memory, not evicted
				d.pinned += int64(len(j.data))
			}
		} else if ob := d.m[j.id]; ob != nil {
			ob.persisted = true
		}
		d.evictLocked()
		d.stepBehindLocked()
		d.mu.Unlock()
	}
}

// putIfLive writes j's value to the store if live (called under d.mu)
// says it is still wanted, and reports whether it was.
func (d *Dir) putIfLive(j persistJob, live func() bool) (bool, error) {
	d.mu.Lock()
	ok := live()
	d.mu.Unlock()
	if !ok {
		return false, nil
	}
	err := d.st.Put(context.Background(), j.id, j.meta, j.data)
	if err != nil {
		d.log.Error("persisting object", "object_id", j.id, "err", err)
	}
	return true, err
}

// evictLocked drops the oldest persisted in-memory objects while the cache
// is over its bound. Their bytes stay in the store.
func (d *Dir) evictLocked() {
	for d.memBytes > d.cfg.CacheBytes && d.fifoHead < len(d.fifo) {
		id := d.fifo[d.fifoHead]
		ob := d.m[id]
		if ob != nil && ob.ready && ob.inMemory && !ob.persisted && !ob.unpersistable {
			return // the write-behind is not done yet; try again after it
		}
		d.fifoHead++
		if ob != nil && ob.ready && ob.inMemory && !ob.unpersistable {
			d.memBytes -= memCost(ob.val.Data)
			delete(d.m, id)
		}
	}
	if d.fifoHead > 1024 && d.fifoHead*2 > len(d.fifo) {
		d.fifo = append(d.fifo[:0], d.fifo[d.fifoHead:]...)
		d.fifoHead = 0
	}
}

// queueLocked puts id, just made an in-memory object, at the back of the
// eviction queue. When the queue is full it first drops the IDs of the
// objects no longer in memory: objects freed leave the table, not the
// queue, and a cache that frees keep under its bound never evicts, so the
// queue would otherwise keep an ID for every object ever sealed.
func (d *Dir) queueLocked(id ids.ObjectID) {
	if len(d.fifo) == cap(d.fifo) && len(d.fifo) > 0 {
		kept := d.fifo[:0]
		for _, x := range d.fifo[d.fifoHead:] {
			if ob := d.m[x]; ob != nil && ob.inMemory {
				kept = append(kept, x)
			}
		}
		// At least as many pushes as IDs kept before the next scan.
		d.fifo, d.fifoHead = slices.Grow(kept, len(kept)), 0
	}
	d.fifo = append(d.fifo, id)
}

// Expect records that id will be made by task.
func (d *Dir) Expect(id ids.ObjectID, task ids.TaskID) {
	d.mu.Lock()
	if d.m[id] == nil {
		d.m[id] = &object{task: task}
	}
	d.mu.Unlock()
}

// Known reports whether id is pending or ready here (or in the store).
func (d *Dir) Known(ctx context.Context, id ids.ObjectID) bool {
	d.mu.Lock()
	_, ok := d.m[id]
	d.mu.Unlock()
	if ok {
		return true
	}
	_, err := d.stat(ctx, id)
	return err == nil || d.recallHeld(ctx, id)
}

// Seal makes id ready with v and wakes its waiters. Sealing a ready object
// again keeps the first value (objects are immutable; a retried task may
// seal twice). A CodecHeld value records where the bytes are; for an
// object ready that way already, it adds the holders.
//
// A small value that the store could not take (with what is queued) is
// refused with the store's error, unless it is a failure (CodecError),
// which is kept in memory only: a waiter must learn of it.
func (d *Dir) Seal(ctx context.Context, id ids.ObjectID, v abi.Value) error {
	return d.seal(ctx, id, v, false)
}

// SealTransient seals a small value that is kept in memory only, never
// written to the store (a module's description, read once by the host,
// which must not fail because the store is full). A large one is sealed
// as by Seal.
func (d *Dir) SealTransient(id ids.ObjectID, v abi.Value) error {
	if len(v.Data) > d.cfg.InlineLimit {
		return d.Seal(context.Background(), id, v)
	}
	return d.seal(context.Background(), id, v, true)
}

// metaOf is the store metadata of v, owned by owner, for id.
func metaOf(owner string, id ids.ObjectID, v abi.Value) store.Meta {
	return store.Meta{Size: int64(len(v.Data)), Codec: store.Codec(v.Codec), Owner: owner, Task: id.Task(), Created: time.Now()}
}

// metaFor is the store metadata of v for id: its owner is the one the
// table records (a copy of another host's object), else this host.
func (d *Dir) metaFor(id ids.ObjectID, v abi.Value) store.Meta {
	d.mu.Lock()
	owner := d.ownerOfLocked(id)
	d.mu.Unlock()
	if owner == "" {
		owner = d.cfg.Self
	}
	return metaOf(owner, id, v)
}

func (d *Dir) seal(ctx context.Context, id ids.ObjectID, v abi.Value, transient bool) error {
	if v.Codec == CodecHeld {
		return d.sealHeld(id, v)
	}
	d.mu.Lock()
	d.sealing++
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		if d.sealing--; d.sealing == 0 {
			d.sealed.Broadcast()
		}
		d.mu.Unlock()
	}()
	meta := d.metaFor(id, v)
	large := len(v.Data) > d.cfg.InlineLimit
	memOnly := transient && !large
	if !memOnly {
		// Written behind: refuse it now if the store could not take it
		// (with what is queued), rather than hold it in memory for good.
		// Failures are always taken, in memory only if need be: they are
		// small, and a waiter must learn of them. A large value waits
		// here while the queue is full (backpressure, behind.go).
		if err := d.admitBehind(ctx, int64(len(v.Data)), large); err != nil {
			if v.Codec != abi.CodecError || large {
				return fmt.Errorf("storing object %s: %w", id, err)
			}
			memOnly = true
		}
	}
	if large {
		// After any delete of the same ID queued by a Free (a retried task
		// puts under its first attempt's IDs): reads of it must not take
		// the delete for theirs.
		d.waitDeleted(id)
	}
	d.mu.Lock()
	ob := d.m[id]
	if ob == nil {
		ob = &object{task: id.Task()}
		d.m[id] = ob
	}
	if !memOnly && (ob.ready || ob.freed) {
		// Its room, taken by admitBehind, is not used.
		d.unadmitLocked(int64(len(v.Data)), large)
	}
	if ob.ready {
		d.mu.Unlock()
		return nil
	}
	if ob.freed {
		// Nobody references it any more: wake who waits, keep nothing.
		ob.ready = true
		live := liveWaiters(ob)
		delete(d.m, id)
		d.mu.Unlock()
		for _, w := range live {
			w.fn(v)
		}
		return nil
	}
	ob.ready = true
	ob.val = v
	if large {
		// Ready now; its bytes reach the store behind (behind.go), read
		// from memory until then.
		ob.val.Data = nil
		ob.persisted = true
		ob.writing = &pendingWrite{meta: meta, data: v.Data, at: d.cfg.Clock.Now()}
		d.unhanded += int64(len(v.Data)) // queuedLarge: counted by admitBehind

		d.largeMem += int64(len(v.Data))
		d.evictLargeLocked(0)
		d.deferred = append(d.deferred, deferredWrite{id: id, ob: ob})
	} else {
		ob.inMemory = true
		d.memBytes += memCost(v.Data)
		d.queueLocked(id)
	}
	live := liveWaiters(ob)
	persist := !large && !memOnly
	if persist {
		// d.queued: counted by admitBehind.
		ob.deferred = true
		d.deferredSmall = append(d.deferredSmall, smallWrite{job: persistJob{id: id, meta: meta, data: v.Data, ob: ob}, at: d.cfg.Clock.Now()})
	} else if memOnly {
		ob.unpersistable = true
		d.pinned += int64(len(v.Data))
	}
	var due []persistJob
	if large || persist {
		// Handed to the persist loop now if due at once (PersistAfter 0,
		// memory short), else by the feeder later (behind.go).
		due, _ = d.dueLocked(d.cfg.Clock.Now(), d.closing) // closing: the feeder may have stopped
	}
	d.mu.Unlock()
	if large || persist {
		d.handLarge(due)
		d.wakeFeeder()
	}
	for _, w := range live {
		w.fn(v)
	}
	return nil
}

// liveWaiters takes ob's waiters that were not cancelled. Called with the
// lock held.
func liveWaiters(ob *object) []*waiter {
	waiters := ob.waiters
	ob.waiters = nil
	live := waiters[:0]
	for _, w := range waiters {
		if !w.dead {
			live = append(live, w)
		}
	}
	return live
}

// sealHeld makes id ready with a value whose bytes other hosts hold. A
// ready object that is held elsewhere learns of the new holders.
func (d *Dir) sealHeld(id ids.ObjectID, v abi.Value) error {
	hv, err := DecodeHeld(v.Data)
	if err != nil {
		return err
	}
	d.mu.Lock()
	ob := d.m[id]
	if ob == nil {
		ob = &object{task: id.Task()}
		d.m[id] = ob
	}
	if ob.ready {
		if !ob.inMemory {
			for _, x := range hv.Holders {
				if !slices.Contains(ob.holders, x) {
					ob.holders = append(ob.holders, x)
				}
			}
		}
		d.mu.Unlock()
		return nil
	}
	ob.ready = true
	if ob.freed {
		delete(d.m, id)
	}
	ob.val = abi.Value{Codec: hv.Codec}
	ob.size = hv.Size
	ob.holders = slices.Clone(hv.Holders)
	val := ob.val
	waiters := ob.waiters
	ob.waiters = nil
	own := ob.owner == "" && !ob.freed
	d.mu.Unlock()
	if own {
		d.keepHeld(id, v)
	}
	for _, w := range waiters {
		d.mu.Lock()
		dead := w.dead
		d.mu.Unlock()
		if !dead {
			w.fn(val)
		}
	}
	return nil
}

// refill replaces what is known of an object's bytes after its owner was
// asked again: new holders, or the value itself. An object that is pending
// here (rebuilt) becomes ready, waking its waiters.
func (d *Dir) refill(id ids.ObjectID, v abi.Value) {
	d.mu.Lock()
	ob := d.m[id]
	if ob == nil || !ob.ready {
		d.mu.Unlock()
		if err := d.Seal(context.Background(), id, v); err != nil {
			d.log.Error("sealing a refetched object", "object_id", id, "err", err)
		}
		return
	}
	switch {
	case v.Codec == CodecHeld:
		if hv, err := DecodeHeld(v.Data); err == nil && !ob.inMemory {
			ob.holders, ob.size = hv.Holders, hv.Size
		}
		d.mu.Unlock()
	case ob.inMemory:
		d.mu.Unlock()
	case len(v.Data) > d.cfg.InlineLimit:
		d.mu.Unlock()
		d.waitDeleted(id)
		if err := d.st.Put(context.Background(), id, d.metaFor(id, v), v.Data); err != nil {
			d.log.Error("storing a refetched object", "object_id", id, "err", err)
		}
	default:
		// Like a fresh small value: in memory, written behind, evictable.
		ob.val, ob.inMemory, ob.holders = v, true, nil
		d.memBytes += memCost(v.Data)
		d.queueLocked(id)
		d.queued += int64(len(v.Data))
		d.mu.Unlock()
		d.hand(persistJob{id: id, meta: d.metaFor(id, v), data: v.Data, ob: ob})
	}
}
