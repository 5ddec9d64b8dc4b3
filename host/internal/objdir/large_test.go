package objdir

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

// countingStore is a gatedStore that counts the Puts that reached it.
type countingStore struct {
	*gatedStore
	puts atomic.Int32
}

func (c *countingStore) Put(ctx context.Context, id ids.ObjectID, meta store.Meta, data []byte) error {
	err := c.gatedStore.Put(ctx, id, meta, data)
	if err == nil {
		c.puts.Add(1)
	}
	return err
}

// TestLargeWrittenBehind: a large value is ready at its seal, before the
// store has it (the store's writes are held back here); until then every
// read — Get, Stream, a peer's Locate and Serve — has its bytes from
// memory, whole and in order; once stored they are read from the store.
// Nothing goes inline to a peer: it pulls the value in chunks.
func TestLargeWrittenBehind(t *testing.T) {
	st := &countingStore{gatedStore: newGatedStore(1 << 30)}
	d := newDir(t, st, func(c *Config) { c.InlineLimit, c.ChunkBytes = 1024, 1000 })
	ctx := ctxFor(t)
	id := ids.NewTaskID().Return(0)
	v := rawValue(4500, 0)
	for i := range v.Data {
		v.Data[i] = byte(i)
	}
	if err := d.Seal(ctx, id, v); err != nil { // returns with the store's gate shut
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		if got := getOne(t, d, id); !bytes.Equal(got.Data, v.Data) {
			t.Fatalf("%s: Get returned %d other bytes", when, len(got.Data))
		}
		var streamed []byte
		chunks := 0
		if err := d.Stream(ctx, id, func(_ *Header, c []byte) error {
			streamed, chunks = append(streamed, c...), chunks+1
			return nil
		}); err != nil || !bytes.Equal(streamed, v.Data) || chunks != 5 {
			t.Fatalf("%s: streamed %d bytes in %d chunks (%v), want 4500 in 5", when, len(streamed), chunks, err)
		}
		loc, err := d.Locate(ctx, id, nil, 0)
		if err != nil || !loc.Ready || loc.Inline || len(loc.Holders) != 1 || loc.Size != 4500 {
			t.Fatalf("%s: Locate %+v %v, want this host as the holder, not inline", when, loc, err)
		}
	}
	check("before the store has it")
	if n := st.puts.Load(); n != 0 {
		t.Fatalf("%d puts reached the store through a shut gate", n)
	}
	close(st.gate)
	if err := d.catchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stat(ctx, id); err != nil {
		t.Fatalf("not in the store after the write-behind: %v", err)
	}
	if _, pending := d.writingOf(id); pending {
		t.Fatal("its bytes are still held in memory after they were stored")
	}
	check("once stored")
}

// TestLargeFreedBeforeWritten: a large object freed before its turn in the
// write-behind never reaches the disk, and reads of it say it was freed.
func TestLargeFreedBeforeWritten(t *testing.T) {
	st := &countingStore{gatedStore: newGatedStore(1 << 30)}
	d := newDir(t, st, func(c *Config) { c.InlineLimit = 1024 })
	ctx := ctxFor(t)
	task := ids.NewTaskID()
	// A small value ahead of it in the write-behind holds the queue (the
	// store's writes wait for the gate), so the free comes first.
	if err := d.Seal(ctx, task.Return(1), jsonValue(`"ahead"`)); err != nil {
		t.Fatal(err)
	}
	id := task.Return(0)
	if err := d.Seal(ctx, id, rawValue(4096, 'x')); err != nil {
		t.Fatal(err)
	}
	d.Free([]ids.ObjectID{id})
	close(st.gate)
	if err := d.catchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if n := st.puts.Load(); n != 1 {
		t.Fatalf("%d puts reached the store, want 1 (the small value): the large one freed before its turn was written", n)
	}
	if _, err := d.Value(ctx, id); !errors.Is(err, ErrFreed) {
		t.Fatalf("a read of it: %v, want ErrFreed", err)
	}
}

// TestSmallFreedBeforeWritten: a small value freed before the write-behind
// reaches it is never written either (a loop of puts or tasks whose refs
// are dropped writes nothing), and reads as freed.
func TestSmallFreedBeforeWritten(t *testing.T) {
	st := &countingStore{gatedStore: newGatedStore(1 << 30)}
	d := newDir(t, st, func(c *Config) { c.InlineLimit = 1024 })
	ctx := ctxFor(t)
	task := ids.NewTaskID()
	// The first value holds the queue at the gate.
	if err := d.Seal(ctx, task.Return(1), jsonValue(`"ahead"`)); err != nil {
		t.Fatal(err)
	}
	freed, kept := task.Return(0), task.Return(2)
	for _, id := range []ids.ObjectID{freed, kept} {
		if err := d.Seal(ctx, id, jsonValue(`"small"`)); err != nil {
			t.Fatal(err)
		}
	}
	d.Free([]ids.ObjectID{freed})
	close(st.gate)
	if err := d.catchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if n := st.puts.Load(); n != 2 {
		t.Fatalf("%d puts reached the store, want 2: the value freed before its turn was written", n)
	}
	if _, err := st.Stat(ctx, freed); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the freed value in the store: %v", err)
	}
	if _, err := st.Stat(ctx, kept); err != nil {
		t.Fatalf("the kept value in the store: %v", err)
	}
	if _, err := d.Value(ctx, freed); !errors.Is(err, ErrFreed) {
		t.Fatalf("a read of the freed one: %v, want ErrFreed", err)
	}
}

// TestLargeBackpressure: while one large value waits for the store, the
// next large seal waits for it (one at a time on its way to the store) and
// a small one does not; all are stored once the store takes writes again.
func TestLargeBackpressure(t *testing.T) {
	st := &countingStore{gatedStore: newGatedStore(1 << 30)}
	d := newDir(t, st, func(c *Config) { c.InlineLimit = 1024 })
	ctx := ctxFor(t)
	task := ids.NewTaskID()
	big := rawValue(maxQueued+1, 'b')
	if err := d.Seal(ctx, task.Return(0), big); err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() { second <- d.Seal(ctx, task.Return(1), rawValue(4096, 's')) }()
	// The second seal cannot be taken before the first is written: a
	// cancelled context ends its wait with the context's error.
	short, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.Seal(short, task.Return(2), rawValue(4096, 't')); !errors.Is(err, context.Canceled) {
		t.Fatalf("a large seal with the queue full and its context done: %v, want context.Canceled", err)
	}
	// A small value does not wait behind the large ones: taken at once,
	// even with its context done.
	if err := d.Seal(short, task.Return(3), jsonValue(`"small"`)); err != nil {
		t.Fatalf("a small seal while a large write is held up: %v", err)
	}
	if got := getOne(t, d, task.Return(3)); string(got.Data) != `"small"` {
		t.Fatalf("the small value read back as %q", got.Data)
	}
	close(st.gate)
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	if err := d.catchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if n := st.puts.Load(); n != 3 {
		t.Fatalf("%d puts reached the store, want 3", n)
	}
	if got := getOne(t, d, task.Return(0)); len(got.Data) != len(big.Data) || got.Codec != abi.CodecRaw {
		t.Fatalf("the first value read back as %d bytes", len(got.Data))
	}
}

// An owner's answer naming an ints value that is not whole integers is
// refused (found by an attack review): inline, or held elsewhere with
// such a size.
func TestValueOfMalformedInts(t *testing.T) {
	for _, loc := range []Location{
		{Ready: true, Codec: "ints", Inline: true, Data: make([]byte, 9)},
		{Ready: true, Codec: "ints", Size: 12, Holders: []string{"h:1"}},
		{Ready: true, Codec: "ints", Size: -8, Holders: []string{"h:1"}},
	} {
		if v, err := valueOf(loc); err == nil {
			t.Errorf("%+v gave %v", loc, v)
		}
	}
	if _, err := valueOf(Location{Ready: true, Codec: "ints", Inline: true, Data: make([]byte, 16)}); err != nil {
		t.Errorf("16 bytes of ints: %v", err)
	}
}
