package objdir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

// hangGuard bounds waits that must end: a guard against a hang, never a
// measure of speed.
const hangGuard = 30 * time.Second

// errReset is what a peer that fails mid-transfer gives.
var errReset = errors.New("twin: connection reset")

// cluster is an in-memory twin of the hosts a Dir reaches through Peers:
// each host is a Dir under an address, and calls go straight to the other
// Dir's Locate, Serve and AddHolder.
type cluster struct {
	t  testing.TB
	mu sync.Mutex
	// dirs are the hosts by address; a missing address is no member.
	dirs map[string]*Dir
	down map[string]bool
	// breakAfter makes pulls from an address fail after that many bytes.
	breakAfter map[string]int
	// stallAfter makes pulls from an address send that many bytes, then
	// nothing until the pull's context ends; stalled gets the address as
	// one stalls.
	stallAfter map[string]int
	stalled    chan string
	// holdAfter makes pulls from an address send that many bytes, then
	// wait (announced on stalled) until the channel is closed, then send
	// the rest.
	holdAfter map[string]int
	hold      chan struct{}
	// lie replaces the header of pulls from an address.
	lie map[string]Header
	// locate, if set, answers Locate calls in place of the owner.
	locate func(owner string, id ids.ObjectID) (Location, bool, error)
	// added receives every AddLocation call.
	added chan string
	pulls map[string]int // pulls per address
	// inUse, if set, says what the receiving host still counts.
	inUse func(ids.ObjectID) bool
	// freeCalls counts FreeCopies calls.
	freeCalls atomic.Int64
}

func newCluster(t testing.TB) *cluster {
	return &cluster{t: t, dirs: map[string]*Dir{}, down: map[string]bool{}, breakAfter: map[string]int{}, lie: map[string]Header{},
		stallAfter: map[string]int{}, stalled: make(chan string, 16), holdAfter: map[string]int{},
		added: make(chan string, 64), pulls: map[string]int{}}
}

// host adds a Dir at addr, over its own store.Memory, closed at the end of
// the test. mutate may change its Config.
func (c *cluster) host(addr string, mutate func(*Config)) *Dir {
	c.t.Helper()
	cfg := testConfig(store.NewMemory())
	cfg.Self, cfg.ID, cfg.Peers = addr, "host-"+addr, twinPeers{c: c, self: addr}
	if mutate != nil {
		mutate(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(d.Close)
	c.mu.Lock()
	c.dirs[addr] = d
	c.mu.Unlock()
	return d
}

func (c *cluster) setDown(addr string) {
	c.mu.Lock()
	c.down[addr] = true
	c.mu.Unlock()
}

func (c *cluster) pullsFrom(addr string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pulls[addr]
}

// reach returns the Dir at addr, or an ErrUnreachable error.
func (c *cluster) reach(addr string) (*Dir, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.dirs[addr]
	switch {
	case d == nil:
		return nil, fmt.Errorf("%s: %w: no member", addr, ErrUnreachable)
	case c.down[addr]:
		return nil, fmt.Errorf("%s: %w: it failed", addr, ErrUnreachable)
	}
	return d, nil
}

// twinPeers is Peers for the host at self.
type twinPeers struct {
	c    *cluster
	self string
}

func (p twinPeers) Locate(ctx context.Context, owner string, id ids.ObjectID, failed []string, timeout time.Duration) (Location, error) {
	p.c.mu.Lock()
	fake := p.c.locate
	p.c.mu.Unlock()
	if fake != nil {
		if loc, ok, err := fake(owner, id); ok {
			return loc, err
		}
	}
	d, err := p.c.reach(owner)
	if err != nil {
		return Location{}, err
	}
	loc, err := d.Locate(ctx, id, failed, timeout)
	if err == nil && loc.Ready {
		d.AddCopy(id, p.self)
	}
	return loc, err
}

func (p twinPeers) Pull(ctx context.Context, from string, id ids.ObjectID) (Header, io.ReadCloser, error) {
	d, err := p.c.reach(from)
	if err != nil {
		return Header{}, nil, err
	}
	p.c.mu.Lock()
	p.c.pulls[from]++
	limit, breaks := p.c.breakAfter[from]
	lie, lies := p.c.lie[from]
	stallAt, stalls := p.c.stallAfter[from]
	holdAt, holds := p.c.holdAfter[from]
	hold := p.c.hold
	p.c.mu.Unlock()
	var hdr *Header
	var buf bytes.Buffer
	if err := d.Serve(ctx, id, func(h *Header, chunk []byte) error {
		if h != nil {
			hdr = h
		}
		buf.Write(chunk)
		return nil
	}); err != nil {
		return Header{}, nil, err
	}
	var r io.Reader = &buf
	if breaks {
		r = io.MultiReader(io.LimitReader(&buf, int64(limit)), errReader{errReset})
	}
	if stalls {
		r = io.MultiReader(io.LimitReader(&buf, int64(stallAt)), stallReader{ctx: ctx, addr: from, stalled: p.c.stalled})
	}
	if holds {
		r = io.MultiReader(io.LimitReader(&buf, int64(holdAt)), holdReader{addr: from, stalled: p.c.stalled, release: hold}, &buf)
	}
	if lies {
		hdr = &lie
	}
	return *hdr, io.NopCloser(r), nil
}

func (p twinPeers) AddLocation(ctx context.Context, owner string, id ids.ObjectID, holder string) error {
	d, err := p.c.reach(owner)
	if err != nil {
		return err
	}
	d.AddHolder(id, holder)
	d.AddCopy(id, holder)
	p.c.added <- owner + "<-" + holder
	return nil
}

func (p twinPeers) FreeCopies(ctx context.Context, addr string, objs []ids.ObjectID) error {
	d, err := p.c.reach(addr)
	if err != nil {
		return err
	}
	d.OwnerFreed(ctx, p.self, objs, p.c.inUse)
	p.c.freeCalls.Add(1)
	return nil
}

func (p twinPeers) Down(addr string) bool {
	_, err := p.c.reach(addr)
	return err != nil
}

func (p twinPeers) Alive(addr string) bool { return !p.Down(addr) }

// stallReader is a holder that sends nothing more, and does not hang up.
type stallReader struct {
	ctx     context.Context
	addr    string
	stalled chan string
}

func (r stallReader) Read([]byte) (int, error) {
	r.stalled <- r.addr
	<-r.ctx.Done()
	return 0, r.ctx.Err()
}

// holdReader pauses a transfer until release is closed.
type holdReader struct {
	addr    string
	stalled chan string
	release chan struct{}
}

func (r holdReader) Read([]byte) (int, error) {
	r.stalled <- r.addr
	<-r.release
	return 0, io.EOF
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// testConfig is a small Config over st: values over 16 bytes are large.
func testConfig(st store.Store) Config {
	cfg := DefaultConfig(st)
	cfg.InlineLimit, cfg.CacheBytes, cfg.ChunkBytes = 16, 1<<20, 8
	cfg.UnknownGrace = 50 * time.Millisecond
	// Large values written at once, one at a time, as the tests of the
	// write-behind expect; tier_test.go tests the memory tier.
	cfg.PersistAfter, cfg.LargeMemoryBytes = 0, 0
	return cfg
}

// newDir is a Dir outside a cluster over st (a new store.Memory if nil).
func newDir(t testing.TB, st store.Store, mutate func(*Config)) *Dir {
	t.Helper()
	if st == nil {
		st = store.NewMemory()
	}
	cfg := testConfig(st)
	cfg.Self, cfg.ID = "self:1", "self"
	if mutate != nil {
		mutate(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

func ctxFor(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), hangGuard)
	t.Cleanup(cancel)
	return ctx
}

func jsonValue(s string) abi.Value { return abi.Value{Codec: abi.CodecJSON, Data: []byte(s)} }

func rawValue(n int, b byte) abi.Value {
	return abi.Value{Codec: abi.CodecRaw, Data: bytes.Repeat([]byte{b}, n)}
}

// getOne gets id's value through Get.
func getOne(t testing.TB, d *Dir, id ids.ObjectID) abi.Value {
	t.Helper()
	vals, err := d.Get(ctxFor(t), []ids.ObjectID{id}, -1, nil)
	if err != nil {
		t.Fatalf("Get %s: %v", id, err)
	}
	return vals[0]
}

// wantError checks that v is a failure of kind.
func wantError(t testing.TB, v abi.Value, kind abi.ErrorKind) *abi.TaskError {
	t.Helper()
	if v.Codec != abi.CodecError {
		t.Fatalf("got %s %q, want a failure of kind %s", v.Codec, v.Data, kind)
	}
	te := abi.DecodeTaskError(v.Data)
	if te.Kind != kind {
		t.Fatalf("failure of kind %s (%s), want %s", te.Kind, te.Message, kind)
	}
	return te
}
