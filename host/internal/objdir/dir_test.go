package objdir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

func TestNewRefusesBadConfig(t *testing.T) {
	for name, mutate := range map[string]func(*Config){
		"no store":       func(c *Config) { c.Store = nil },
		"negative limit": func(c *Config) { c.InlineLimit = -1 },
		"negative cache": func(c *Config) { c.CacheBytes = -1 },
		"negative chunk": func(c *Config) { c.ChunkBytes = -1 },
		"negative grace": func(c *Config) { c.UnknownGrace = -1 },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig(store.NewMemory())
			mutate(&cfg)
			if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New: %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// TestSealKeepsFirstValue: objects are immutable; a second seal (a retried
// task) keeps the first value.
func TestSealKeepsFirstValue(t *testing.T) {
	d := newDir(t, nil, nil)
	id := ids.NewTaskID().Return(0)
	ctx := ctxFor(t)
	if d.Known(ctx, id) {
		t.Fatal("an unknown object is known")
	}
	if err := d.Seal(ctx, id, jsonValue("1")); err != nil {
		t.Fatal(err)
	}
	if err := d.Seal(ctx, id, jsonValue("2")); err != nil {
		t.Fatal(err)
	}
	if v := getOne(t, d, id); string(v.Data) != "1" {
		t.Fatalf("value %q, want the first one", v.Data)
	}
	if c, err := d.Codec(ctx, id); err != nil || c != abi.CodecJSON {
		t.Fatalf("Codec: %v, %v", c, err)
	}
	if !d.Known(ctx, id) || !d.Here(ctx, id) {
		t.Fatal("a sealed object is not known, or not here")
	}
}

func TestNotFound(t *testing.T) {
	d := newDir(t, nil, nil)
	id := ids.NewTaskID().Return(0)
	ctx := ctxFor(t)
	checks := map[string]error{}
	_, checks["Get"] = d.Get(ctx, []ids.ObjectID{id}, -1, nil)
	_, checks["Value"] = d.Value(ctx, id)
	_, checks["Holding"] = d.Holding(ctx, id)
	_, checks["Codec"] = d.Codec(ctx, id)
	checks["OnReady"] = d.OnReady(ctx, id, func(abi.Value) { t.Error("a callback for an unknown object ran") })
	_, checks["Locate"] = d.Locate(ctx, id, nil, 0)
	checks["Serve"] = d.Serve(ctx, id, func(*Header, []byte) error { return nil })
	checks["Stream"] = d.Stream(ctx, id, func(*Header, []byte) error { return nil })
	for name, err := range checks {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s of an unknown object: %v, want ErrNotFound", name, err)
		}
	}
	if d.Here(ctx, id) || d.IsHeld(id) {
		t.Error("an unknown object is here or held")
	}
}

// TestTransientStaysInMemory: a transient value is never written to the
// store; a sealed small one is, and a large one, behind the seal (all of
// them by Close).
func TestTransientStaysInMemory(t *testing.T) {
	st := store.NewMemory()
	d := newDir(t, st, nil)
	task := ids.NewTaskID()
	transient, persisted, large := task.Return(0), task.Return(1), task.Return(2)
	if err := d.SealTransient(transient, jsonValue(`"t"`)); err != nil {
		t.Fatal(err)
	}
	if err := d.Seal(ctxFor(t), persisted, jsonValue(`"p"`)); err != nil {
		t.Fatal(err)
	}
	if err := d.SealTransient(large, rawValue(100, 'l')); err != nil { // too large to be transient
		t.Fatal(err)
	}
	d.Close() // every write behind is done
	if _, err := st.Stat(t.Context(), large); err != nil {
		t.Fatalf("a large value is not in the store: %v", err)
	}
	if _, err := st.Stat(t.Context(), transient); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a transient value reached the store: %v", err)
	}
	meta, data, err := st.Get(t.Context(), persisted)
	if err != nil || string(data) != `"p"` || meta.Owner != "self:1" || meta.Task != task {
		t.Fatalf("the persisted value: %+v %q %v", meta, data, err)
	}
	// The transient value is still served from memory after Close.
	if v := getOne(t, d, transient); string(v.Data) != `"t"` {
		t.Fatalf("transient value %q", v.Data)
	}
}

// TestEvictionAndRefill: past CacheBytes, the oldest persisted values
// leave memory and are read back from the store.
func TestEvictionAndRefill(t *testing.T) {
	st := store.NewMemory()
	d := newDir(t, st, func(c *Config) { c.CacheBytes = 20 })
	task := ids.NewTaskID()
	var refs []ids.ObjectID
	for i := range 6 {
		id := task.Return(i)
		refs = append(refs, id)
		if err := d.Seal(ctxFor(t), id, rawValue(8, byte('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	d.Close() // the writes behind are done, and evicted what they could
	d.mu.Lock()
	inMemory := 0
	for _, id := range refs {
		if ob := d.m[id]; ob != nil && ob.inMemory {
			inMemory++
		}
	}
	mem := d.memBytes
	_, oldest := d.m[refs[0]]
	d.mu.Unlock()
	if mem > 20 || inMemory > 2 || oldest {
		t.Fatalf("after eviction: %d bytes in memory, %d values, oldest kept %v", mem, inMemory, oldest)
	}
	for i, id := range refs {
		h, err := d.Holding(ctxFor(t), id)
		if err != nil || !h.Local || h.Size != 8 {
			t.Fatalf("value %d: %+v %v", i, h, err)
		}
		if v := getOne(t, d, id); !bytes.Equal(v.Data, rawValue(8, byte('a'+i)).Data) || v.Codec != abi.CodecRaw {
			t.Fatalf("value %d read back as %s %q", i, v.Codec, v.Data)
		}
	}
}

// TestStoreFull: a small value the store could not take is refused at
// once; a failure is kept in memory instead, and never evicted.
func TestStoreFull(t *testing.T) {
	st := store.NewMemoryQuota(10)
	d := newDir(t, st, func(c *Config) { c.CacheBytes, c.InlineLimit = 1, 1024 }) // failures are small
	task := ids.NewTaskID()
	ok, refused, failure := task.Return(0), task.Return(1), task.Return(2)
	if err := d.Seal(ctxFor(t), ok, rawValue(8, 'o')); err != nil {
		t.Fatal(err)
	}
	if err := d.Seal(ctxFor(t), refused, rawValue(8, 'r')); !errors.Is(err, store.ErrStoreFull) {
		t.Fatalf("a value past the quota: %v, want ErrStoreFull", err)
	}
	if err := d.Seal(ctxFor(t), refused, (&abi.TaskError{Kind: abi.ErrorLimit, Message: "full"}).Encode()); err != nil {
		t.Fatalf("a refused value's failure: %v", err)
	}
	te := (&abi.TaskError{Kind: abi.ErrorHost, Message: "a failure the store cannot take"}).Encode()
	if err := d.Seal(ctxFor(t), failure, te); err != nil {
		t.Fatalf("a failure past the quota: %v", err)
	}
	d.Close()
	wantError(t, getOne(t, d, refused), abi.ErrorLimit)
	wantError(t, getOne(t, d, failure), abi.ErrorHost)
	if _, err := st.Stat(t.Context(), failure); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the failure reached a full store: %v", err)
	}
}

// TestLargeStreamsInChunks: a large value is in the store once sealed, not
// in memory, and Stream sends it in chunks with the header first.
func TestLargeStreamsInChunks(t *testing.T) {
	st := store.NewMemory()
	d := newDir(t, st, nil)
	id := ids.NewTaskID().Return(0)
	val := abi.Value{Codec: abi.CodecRaw, Data: []byte("0123456789abcdefghij")} // 20 bytes, chunks of 8
	if err := d.Seal(ctxFor(t), id, val); err != nil {
		t.Fatal(err)
	}
	h, err := d.Holding(ctxFor(t), id)
	if err != nil || h.InMemory || !h.Local || h.Size != 20 {
		t.Fatalf("a large value: %+v %v", h, err)
	}
	var chunks []string
	var hdrs []*Header
	if err := d.Serve(ctxFor(t), id, func(hdr *Header, c []byte) error {
		hdrs = append(hdrs, hdr)
		chunks = append(chunks, string(c))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(chunks, []string{"01234567", "89abcdef", "ghij"}) || hdrs[0] == nil || *hdrs[0] != (Header{abi.CodecRaw, 20}) || hdrs[1] != nil || hdrs[2] != nil {
		t.Fatalf("chunks %q, headers %v", chunks, hdrs)
	}
	// An error of the sender ends the stream with that error.
	stop := errors.New("receiver gone")
	if err := d.Stream(ctxFor(t), id, func(*Header, []byte) error { return stop }); err != stop {
		t.Fatalf("Stream with a failing sender: %v", err)
	}
	// A small value is served from memory in one chunk.
	small := ids.NewTaskID().Return(0)
	_ = d.Seal(ctxFor(t), small, jsonValue("7"))
	var got []byte
	if err := d.Serve(ctxFor(t), small, func(hdr *Header, c []byte) error {
		if hdr == nil || hdr.Codec != abi.CodecJSON || hdr.Size != 1 {
			t.Errorf("header %+v", hdr)
		}
		got = append(got, c...)
		return nil
	}); err != nil || string(got) != "7" {
		t.Fatalf("Serve of a small value: %q %v", got, err)
	}
}

// TestHolders: a value held elsewhere records its holders, learns new ones,
// forgets failed ones, and Reset makes it pending again.
func TestHolders(t *testing.T) {
	d := newDir(t, nil, nil)
	id := ids.NewTaskID().Return(0)
	ctx := ctxFor(t)
	d.Expect(id, id.Task())
	if err := d.Seal(ctx, id, Held{Codec: abi.CodecRaw, Size: 100, Holders: []string{"a:1", "b:1"}}.Value()); err != nil {
		t.Fatal(err)
	}
	if !d.IsHeld(id) || d.Here(ctx, id) {
		t.Fatal("a held value is not held, or here")
	}
	d.AddHolder(id, "c:1")
	d.AddHolder(id, "c:1")
	_ = d.Seal(ctx, id, Held{Codec: abi.CodecRaw, Size: 100, Holders: []string{"d:1", "a:1"}}.Value())
	d.DropHolders(id, []string{"a:1"})
	h, err := d.Holding(ctx, id)
	if err != nil || h.Local || h.Size != 100 || h.Value.Codec != abi.CodecRaw || !slices.Equal(h.Holders, []string{"b:1", "c:1", "d:1"}) {
		t.Fatalf("holding %+v %v", h, err)
	}
	if c, err := d.Codec(ctx, id); err != nil || c != abi.CodecRaw {
		t.Fatalf("codec of a held value: %v %v", c, err)
	}
	d.Reset(id)
	if ready, err := d.WaitReady(ctx, []ids.ObjectID{id}, 1, true, 0, nil); !errors.Is(err, ErrTimeout) || ready[0] {
		t.Fatalf("a reset object: %v %v, want pending", ready, err)
	}
	if err := d.Seal(ctx, id, rawValue(4, 'n')); err != nil {
		t.Fatal(err)
	}
	if v := getOne(t, d, id); string(v.Data) != "nnnn" {
		t.Fatalf("the rebuilt value %q", v.Data)
	}
	// Reset keeps an object that has a copy here.
	d.Reset(id)
	if !d.Here(ctx, id) {
		t.Fatal("Reset dropped a value that is here")
	}
}

// TestMalformedHeld: a held value that does not decode is refused and
// leaves the object pending; one naming an error codec too.
func TestMalformedHeld(t *testing.T) {
	d := newDir(t, nil, nil)
	id := ids.NewTaskID().Return(0)
	d.Expect(id, id.Task())
	for name, v := range map[string]abi.Value{
		"garbage":     {Codec: CodecHeld, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}},
		"truncated":   {Codec: CodecHeld, Data: Held{Codec: abi.CodecRaw, Holders: []string{"a:1"}}.Encode(nil)[:3]},
		"error codec": Held{Codec: abi.CodecError, Holders: []string{"a:1"}}.Value(),
		"held codec":  Held{Codec: CodecHeld, Holders: []string{"a:1"}}.Value(),
	} {
		if err := d.Seal(ctxFor(t), id, v); err == nil {
			t.Errorf("%s: sealed", name)
		}
	}
	if _, err := d.WaitReady(ctxFor(t), []ids.ObjectID{id}, 1, true, 0, nil); !errors.Is(err, ErrTimeout) {
		t.Fatalf("after malformed seals: %v, want still pending", err)
	}
}

// TestHammer: concurrent seals, gets, waits and holders on shared objects
// (run with -race).
func TestHammer(t *testing.T) {
	d := newDir(t, nil, func(c *Config) { c.CacheBytes = 64 })
	task := ids.NewTaskID()
	const n = 64
	var wg sync.WaitGroup
	for i := range n {
		id := task.Return(i)
		d.Expect(id, task)
		wg.Go(func() {
			vals, err := d.Get(ctxFor(t), []ids.ObjectID{id}, -1, nil)
			if err != nil || string(vals[0].Data) != fmt.Sprint(i) {
				t.Errorf("Get %d: %v %v", i, vals, err)
			}
		})
		wg.Go(func() {
			_, _ = d.WaitReady(ctxFor(t), []ids.ObjectID{id, task.Return((i + 1) % n)}, 1, true, 0, nil)
			_, _ = d.Holding(ctxFor(t), id)
			d.AddHolder(id, "x:1")
			d.MarkFetched(id)
		})
		wg.Go(func() {
			if err := d.Seal(context.Background(), id, jsonValue(fmt.Sprint(i))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}
