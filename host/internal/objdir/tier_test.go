package objdir

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rayhost/rayhost/internal/clock"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

// notifyStore is a gatedStore that reports each object it stored.
type notifyStore struct {
	*gatedStore
	stored chan ids.ObjectID
}

func newNotifyStore(gated bool) *notifyStore {
	g := newGatedStore(1 << 30)
	if !gated {
		close(g.gate)
	}
	return &notifyStore{gatedStore: g, stored: make(chan ids.ObjectID, 64)}
}

func (n *notifyStore) Put(ctx context.Context, id ids.ObjectID, meta store.Meta, data []byte) error {
	err := n.gatedStore.Put(ctx, id, meta, data)
	if err == nil {
		n.stored <- id
	}
	return err
}

// waitStored waits until the store reports id stored, failing on another.
func (n *notifyStore) waitStored(t *testing.T, id ids.ObjectID) {
	t.Helper()
	select {
	case got := <-n.stored:
		if got != id {
			t.Fatalf("stored %s, want %s first", got, id)
		}
	case <-time.After(hangGuard):
		t.Fatalf("%s never reached the store", id)
	}
}

// noneStored fails if the store reported anything stored.
func (n *notifyStore) noneStored(t *testing.T, when string) {
	t.Helper()
	select {
	case got := <-n.stored:
		t.Fatalf("%s: %s reached the store", when, got)
	default:
	}
}

const tierAge = time.Hour // PersistAfter in these tests: only the fake clock gets there

func tierDir(t *testing.T, st store.Store, mem int64) (*Dir, *clock.Fake) {
	clk := clock.NewFake(time.Unix(1_000_000, 0))
	d := newDir(t, st, func(c *Config) {
		c.InlineLimit, c.PersistAfter, c.LargeMemoryBytes, c.Clock = 1024, tierAge, mem, clk
	})
	return d, clk
}

// TestTierFreedYoungNeverWritten: a large value freed before it has lived
// PersistAfter never reaches the store — no write, no delete of a file —
// and is read from memory until then; its room is free at once.
func TestTierFreedYoungNeverWritten(t *testing.T) {
	st := newNotifyStore(false)
	d, clk := tierDir(t, st, 1<<20)
	ctx := ctxFor(t)
	id := ids.NewTaskID().Return(0)
	v := rawValue(64<<10, 'y')
	if err := d.Seal(ctx, id, v); err != nil {
		t.Fatal(err)
	}
	if got := getOne(t, d, id); !bytes.Equal(got.Data, v.Data) {
		t.Fatal("a deferred value read back other bytes")
	}
	clk.Advance(tierAge / 2)
	d.Free([]ids.ObjectID{id})
	clk.Advance(tierAge)
	if err := d.catchUp(ctx); err != nil { // the free's delete is done
		t.Fatal(err)
	}
	st.noneStored(t, "freed young")
	d.mu.Lock()
	queued, unhanded := d.queuedLarge, d.unhanded
	d.mu.Unlock()
	if queued != 0 || unhanded != 0 {
		t.Fatalf("after the free %d bytes still counted queued (%d unhanded), want 0", queued, unhanded)
	}
	if _, err := st.Stat(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the store has the freed value: %v", err)
	}
}

// TestTierWrittenOnceOld: a value that outlives PersistAfter is written,
// and still read from memory while the tier has room; one younger is not
// written. Stats counts the bytes not written yet, and none once every
// write is done.
func TestTierWrittenOnceOld(t *testing.T) {
	st := newNotifyStore(false)
	d, clk := tierDir(t, st, 1<<30)
	ctx := ctxFor(t)
	task := ids.NewTaskID()
	old, young := task.Return(0), task.Return(1)
	v := rawValue(64<<10, 'o')
	if err := d.Seal(ctx, old, v); err != nil {
		t.Fatal(err)
	}
	clk.Advance(tierAge / 2)
	if err := d.Seal(ctx, young, rawValue(64<<10, 'n')); err != nil {
		t.Fatal(err)
	}
	st.noneStored(t, "both young")
	if n := d.Stats().Unpersisted; n != 128<<10 {
		t.Fatalf("unpersisted %d bytes with both young, want %d", n, 128<<10)
	}
	clk.Advance(tierAge / 2)
	st.waitStored(t, old)
	if err := d.catchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if n := d.Stats().Unpersisted; n != 64<<10 {
		t.Fatalf("unpersisted %d bytes with the older written, want %d", n, 64<<10)
	}
	if w, inMemory := d.writingOf(old); !inMemory || !w.stored {
		t.Fatal("the stored value left memory with room to spare")
	}
	if got := getOne(t, d, old); !bytes.Equal(got.Data, v.Data) {
		t.Fatal("read back other bytes")
	}
	st.noneStored(t, "the younger one, before its age")
	if _, pending := d.writingOf(young); !pending {
		t.Fatal("the younger value left memory before its age")
	}
	clk.Advance(tierAge / 2)
	st.waitStored(t, young)
	if err := d.catchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if n := d.Stats().Unpersisted; n != 0 {
		t.Fatalf("unpersisted %d bytes once both are written", n)
	}
}

// TestTierMemoryShort: past half of LargeMemoryBytes the oldest values
// are written at once, young or not; a seal that would go past the bound
// waits for the writes (a done context ends the wait with its error),
// and is taken once they are done.
func TestTierMemoryShort(t *testing.T) {
	st := newNotifyStore(true)
	const n = 64 << 10
	d, _ := tierDir(t, st, 5*n/2)
	ctx := ctxFor(t)
	task := ids.NewTaskID()
	a, b, c := task.Return(0), task.Return(1), task.Return(2)
	if err := d.Seal(ctx, a, rawValue(n, 'a')); err != nil {
		t.Fatal(err)
	}
	if err := d.Seal(ctx, b, rawValue(n, 'b')); err != nil { // past half: a is written
		t.Fatal(err)
	}
	waitClosed(t, st.entered, "the oldest value's write")
	short, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.Seal(short, c, rawValue(n, 'c')); !errors.Is(err, context.Canceled) {
		t.Fatalf("a seal past the bound with its context done: %v, want context.Canceled", err)
	}
	sealed := make(chan error, 1)
	go func() { sealed <- d.Seal(ctx, c, rawValue(n, 'c')) }()
	close(st.gate)
	if err := <-sealed; err != nil {
		t.Fatal(err)
	}
	st.waitStored(t, a)
	st.waitStored(t, b) // handed when the seal of c waited for room
	for id, b := range map[ids.ObjectID]byte{a: 'a', b: 'b', c: 'c'} {
		if got := getOne(t, d, id); len(got.Data) != n || got.Data[0] != b {
			t.Fatalf("%s read back wrong", id)
		}
	}
	st.noneStored(t, "the youngest, with room again")
}

// TestTierStoredMakeRoom: stored values are the first to leave memory when
// the tier needs room, oldest first, and are read from the store then; a
// seal never waits for them.
func TestTierStoredMakeRoom(t *testing.T) {
	st := newNotifyStore(false)
	const n = 64 << 10
	d, clk := tierDir(t, st, 3*n)
	ctx := ctxFor(t)
	task := ids.NewTaskID()
	a, b, c, e := task.Return(0), task.Return(1), task.Return(2), task.Return(3)
	for i, id := range []ids.ObjectID{a, b} {
		if err := d.Seal(ctx, id, rawValue(n, byte('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(tierAge) // both written, both kept
	st.waitStored(t, a)
	st.waitStored(t, b)
	if err := d.catchUp(ctx); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithCancel(ctx)
	cancel() // so a seal that waited would fail
	if err := d.Seal(short, c, rawValue(n, 'c')); err != nil {
		t.Fatal(err)
	}
	if err := d.Seal(short, e, rawValue(n, 'e')); err != nil { // 4n past 3n: a makes room
		t.Fatalf("a seal with stored values to drop waited: %v", err)
	}
	if _, inMemory := d.writingOf(a); inMemory {
		t.Fatal("the oldest stored value kept its memory past the bound")
	}
	if _, inMemory := d.writingOf(b); !inMemory {
		t.Fatal("a younger stored value was dropped too")
	}
	for id, want := range map[ids.ObjectID]byte{a: 'a', b: 'b', c: 'c', e: 'e'} {
		if got := getOne(t, d, id); len(got.Data) != n || got.Data[0] != want {
			t.Fatalf("%s read back wrong", id)
		}
	}
	d.Free([]ids.ObjectID{b, c, e})
	if err := d.catchUp(ctx); err != nil { // c's write, handed as e came, is done
		t.Fatal(err)
	}
	d.mu.Lock()
	mem, queued := d.largeMem, d.queuedLarge
	d.mu.Unlock()
	if mem != 0 || queued != 0 {
		t.Fatalf("after the frees %d bytes in memory, %d queued; want 0", mem, queued)
	}
}

// TestTierCloseWritesAll: Close writes every value still in memory: a
// host that stops keeps what it holds.
func TestTierCloseWritesAll(t *testing.T) {
	st := newNotifyStore(false)
	clk := clock.NewFake(time.Unix(1_000_000, 0))
	cfg := testConfig(st)
	cfg.InlineLimit, cfg.PersistAfter, cfg.LargeMemoryBytes, cfg.Clock = 1024, tierAge, 1<<30, clk
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	id := ids.NewTaskID().Return(0)
	v := rawValue(64<<10, 'k')
	if err := d.Seal(ctx, id, v); err != nil {
		t.Fatal(err)
	}
	d.Close()
	_, got, err := st.Get(ctx, id)
	if err != nil || !bytes.Equal(got, v.Data) {
		t.Fatalf("after Close the store has %d bytes (%v), want the value", len(got), err)
	}
}

// TestTierSealedAgainAfterFree: a retried task seals again under an ID
// freed while its first value waited in memory: the store gets the new
// value, never the old one.
func TestTierSealedAgainAfterFree(t *testing.T) {
	st := newNotifyStore(false)
	d, clk := tierDir(t, st, 1<<30)
	ctx := ctxFor(t)
	id := ids.NewTaskID().Return(0)
	if err := d.Seal(ctx, id, rawValue(64<<10, '1')); err != nil {
		t.Fatal(err)
	}
	d.Free([]ids.ObjectID{id})
	v := rawValue(64<<10, '2')
	if err := d.Seal(ctx, id, v); err != nil {
		t.Fatal(err)
	}
	clk.Advance(tierAge)
	st.waitStored(t, id)
	_, got, err := st.Get(ctx, id)
	if err != nil || !bytes.Equal(got, v.Data) {
		t.Fatalf("the store has %.1q… (%v), want the second value", got[:1], err)
	}
	st.noneStored(t, "after the second value")
}

// TestConfigTier: negative bounds are refused.
func TestConfigTier(t *testing.T) {
	for _, mutate := range []func(*Config){
		func(c *Config) { c.LargeMemoryBytes = -1 },
		func(c *Config) { c.PersistAfter = -time.Second },
	} {
		cfg := testConfig(store.NewMemory())
		mutate(&cfg)
		if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("New: %v, want ErrInvalidConfig", err)
		}
	}
}

// opsStore counts the writes and deletes that reach a store.
type opsStore struct {
	store.Store
	puts, dels atomic.Int64
}

func (o *opsStore) Put(ctx context.Context, id ids.ObjectID, meta store.Meta, data []byte) error {
	o.puts.Add(1)
	return o.Store.Put(ctx, id, meta, data)
}

func (o *opsStore) Delete(ctx context.Context, id ids.ObjectID) error {
	o.dels.Add(1)
	return o.Store.Delete(ctx, id)
}

// TestSmallFreedYoungCostsNothing: small values freed before they have
// lived PersistAfter — most are: a task's result read once, a put dropped —
// cost the store neither a write nor a delete; one that lives longer is
// written, and deleted when freed; one freed while its write is queued is
// deleted (the write may have started).
func TestSmallFreedYoungCostsNothing(t *testing.T) {
	st := &opsStore{Store: store.NewMemory()}
	clk := clock.NewFake(time.Unix(1_000_000, 0))
	d := newDir(t, st, func(c *Config) { c.PersistAfter, c.Clock, c.InlineLimit = tierAge, clk, 1024 })
	ctx := ctxFor(t)
	task := ids.NewTaskID()
	var young []ids.ObjectID
	for i := range 100 {
		id := task.Put(uint32(i))
		if err := d.Seal(ctx, id, jsonValue(`"y"`)); err != nil {
			t.Fatal(err)
		}
		young = append(young, id)
	}
	if got := getOne(t, d, young[7]); string(got.Data) != `"y"` {
		t.Fatalf("a young value read back %q", got.Data)
	}
	d.Free(young)
	old := task.Put(1000)
	if err := d.Seal(ctx, old, jsonValue(`"o"`)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(tierAge)
	if err := waitFor(ctx, func() bool { return st.puts.Load() == 1 }); err != nil {
		t.Fatalf("the old value was not written: %d puts", st.puts.Load())
	}
	if err := d.catchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if p, dl := st.puts.Load(), st.dels.Load(); p != 1 || dl != 0 {
		t.Fatalf("%d writes and %d deletes, want the old value's write only", p, dl)
	}
	d.Free([]ids.ObjectID{old})
	if err := d.catchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if dl := st.dels.Load(); dl != 1 {
		t.Fatalf("%d deletes after freeing a stored value, want 1", dl)
	}
	if _, err := st.Stat(ctx, old); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the freed value is still stored: %v", err)
	}
	d.mu.Lock()
	queued := d.queued
	d.mu.Unlock()
	if queued != 0 {
		t.Fatalf("%d bytes still counted queued", queued)
	}
}

// TestSmallWritesUnderPressure: past half of the write-behind's bound,
// small values are written at once, young or not.
func TestSmallWritesUnderPressure(t *testing.T) {
	st := &opsStore{Store: store.NewMemory()}
	clk := clock.NewFake(time.Unix(1_000_000, 0))
	d := newDir(t, st, func(c *Config) {
		c.PersistAfter, c.Clock, c.InlineLimit, c.CacheBytes = tierAge, clk, 4<<20, 1<<30
	})
	ctx := ctxFor(t)
	task := ids.NewTaskID()
	n := 0
	for ; int64(n)*(1<<20) <= maxQueued/2; n++ {
		if err := d.Seal(ctx, task.Put(uint32(n)), rawValue(1<<20, 'p')); err != nil {
			t.Fatal(err)
		}
	}
	if err := waitFor(ctx, func() bool { return st.puts.Load() == int64(n) }); err != nil {
		t.Fatalf("%d of %d young values written past half the bound", st.puts.Load(), n)
	}
}

// waitFor polls cond until it holds or the hang guard passes.
func waitFor(ctx context.Context, cond func() bool) error {
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("waited in vain")
		}
		time.Sleep(time.Millisecond)
	}
	return ctx.Err()
}

// doneWatch is a context that reports the first call of its Done: a seal
// calls it only once it waits for room (admitBehind).
type doneWatch struct {
	context.Context
	once    sync.Once
	waiting chan struct{}
}

func (c *doneWatch) Done() <-chan struct{} {
	c.once.Do(func() { close(c.waiting) })
	return c.Context.Done()
}

// TestTierCloseWhileSealWaits: a seal that waits for room when Close comes
// (the host stops while a put waits for the disk) is either refused or
// written before Close returns — never acknowledged and then dropped
// because the feeder that would have written it had already stopped.
func TestTierCloseWhileSealWaits(t *testing.T) {
	st := newNotifyStore(true)
	const n = 64 << 10
	d, _ := tierDir(t, st, 4*n)
	ctx := ctxFor(t)
	task := ids.NewTaskID()
	a, b := task.Return(0), task.Return(1)
	if err := d.Seal(ctx, a, rawValue(3*n, 'a')); err != nil { // past half: written at once
		t.Fatal(err)
	}
	waitClosed(t, st.entered, "the first value's write")
	wctx := &doneWatch{Context: ctx, waiting: make(chan struct{})}
	sealed := make(chan error, 1)
	go func() { sealed <- d.Seal(wctx, b, rawValue(2*n, 'b')) }() // 5n past 4n: waits
	waitClosed(t, wctx.waiting, "the second seal to wait for room")
	closed := make(chan struct{})
	go func() { d.Close(); close(closed) }()
	d.fed.Wait() // the feeder has handed what there was and stopped
	close(st.gate)
	waitClosed(t, closed, "Close")
	err := <-sealed
	if err != nil {
		return // refused: the caller knows
	}
	if _, got, gerr := st.Get(ctx, b); gerr != nil || len(got) != 2*n || got[0] != 'b' {
		t.Fatalf("a seal taken during Close is not in the store after it (%v)", gerr)
	}
}

// checkedStore is a notifyStore that reports each CheckSpace (a seal has
// been admitted to the write-behind), and whose writes of values past 1 KiB
// wait for holdLarge besides the gate.
type checkedStore struct {
	*notifyStore
	checked   chan struct{}
	holdLarge chan struct{}
}

func (c *checkedStore) CheckSpace(n int64) error {
	err := c.notifyStore.CheckSpace(n)
	c.checked <- struct{}{}
	return err
}

func (c *checkedStore) Put(ctx context.Context, id ids.ObjectID, meta store.Meta, data []byte) error {
	if len(data) > 1024 {
		select {
		case <-c.holdLarge:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return c.notifyStore.Put(ctx, id, meta, data)
}

// TestTierAdmittedSealsStayInBound: the room a large seal was admitted to
// is its own until it is sealed: a seal admitted before another's bytes
// are counted (here held between its admission and its seal by a delete of
// the same ID, a retried task's) does not take the tier past
// LargeMemoryBytes together with the seals admitted meanwhile.
func TestTierAdmittedSealsStayInBound(t *testing.T) {
	st := &checkedStore{notifyStore: newNotifyStore(true), checked: make(chan struct{}, 8), holdLarge: make(chan struct{})}
	const n = 64 << 10
	d, _ := tierDir(t, st, 4*n)
	t.Cleanup(func() { close(st.holdLarge) }) // before the Dir's Close, which waits for the writes
	ctx := ctxFor(t)
	task := ids.NewTaskID()
	x, y, z := task.Return(0), task.Return(1), task.Return(2)
	if err := d.Seal(ctx, task.Return(3), jsonValue(`"ahead"`)); err != nil { // holds the persist loop at the gate
		t.Fatal(err)
	}
	<-st.checked
	if err := d.Seal(ctx, x, rawValue(2048, '1')); err != nil {
		t.Fatal(err)
	}
	<-st.checked
	d.Free([]ids.ObjectID{x}) // its delete waits behind "ahead"
	sealed := make(chan error, 1)
	go func() { sealed <- d.Seal(ctx, x, rawValue(3*n, '2')) }() // the retry: admitted, then waits for the delete
	select {
	case <-st.checked:
	case <-time.After(hangGuard):
		t.Fatal("the retried seal was never admitted")
	}
	// 3n admitted: room for n more (y), not 2n. z would wait for room: its
	// context, done, ends the wait.
	if err := d.Seal(ctx, y, rawValue(n, 'y')); err != nil {
		t.Fatal(err)
	}
	<-st.checked
	short, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.Seal(short, z, rawValue(n, 'z')); err == nil {
		<-st.checked
	} else if !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	close(st.gate) // "ahead" and the delete; the large writes stay held
	if err := <-sealed; err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	mem, queued := d.largeMem, d.queuedLarge
	d.mu.Unlock()
	if mem > 4*n || queued > 4*n {
		t.Fatalf("%d KiB in the tier (%d KiB queued), past its bound of %d KiB", mem>>10, queued>>10, 4*n>>10)
	}
}

// TestSmallAdmittedStayInBound: small values sealed together while the
// store is slow do not take the write-behind queue past its bound: each
// takes its room under the lock that checked it (they checked, then
// counted, and many checking at once all fit). An attack review found the
// gap.
func TestSmallAdmittedStayInBound(t *testing.T) {
	st := newGatedStore(1 << 40)
	d := newDir(t, st, func(c *Config) { c.InlineLimit, c.PersistAfter = 128<<10, 0 })
	ctx := ctxFor(t)
	const each, sealers = 100 << 10, 48
	perSealer := (maxQueued/each)/sealers + 2 // together past the bound
	var wg sync.WaitGroup
	for range sealers {
		wg.Go(func() {
			for range perSealer {
				if err := d.Seal(ctx, ids.NewTaskID().Return(0), rawValue(each, 's')); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	// The queue fills up to its bound while the store holds the writes;
	// what it holds is looked at all along.
	var most int64
	look := func() int64 {
		d.mu.Lock()
		defer d.mu.Unlock()
		most = max(most, d.queued)
		return d.queued
	}
	if err := waitFor(ctx, func() bool { return look()+each > maxQueued }); err != nil {
		t.Fatal(err)
	}
	for range 100 { // the seals admitted with the last ones
		look()
		time.Sleep(time.Millisecond)
	}
	close(st.gate)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		default:
			look()
			time.Sleep(time.Millisecond)
		}
	}
	if most > maxQueued {
		t.Fatalf("the write-behind held %d KiB at once, past its bound of %d KiB", most>>10, maxQueued>>10)
	}
}
