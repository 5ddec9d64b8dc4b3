package objdir

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

// streamed is what a StreamThrough sent: the header, the bytes, and how
// many chunks they came in.
type streamed struct {
	hdr    *Header
	data   []byte
	chunks int
	// failAfter, if > 0, fails the send of that chunk (a client gone).
	failAfter int
}

var errClientGone = errors.New("test: the client went away")

func (s *streamed) send(h *Header, chunk []byte) error {
	if h != nil {
		if s.hdr != nil {
			return errors.New("a second header")
		}
		s.hdr = h
	}
	s.chunks++
	if s.failAfter > 0 && s.chunks == s.failAfter {
		return errClientGone
	}
	s.data = append(s.data, chunk...)
	return nil
}

// heldOn seals id on the holders with v, and on reader as held by them.
func heldOn(t *testing.T, reader *Dir, id ids.ObjectID, v abi.Value, holders ...*Dir) {
	t.Helper()
	var addrs []string
	for _, h := range holders {
		if err := h.Seal(ctxFor(t), id, v); err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, h.cfg.Self)
	}
	if err := reader.Seal(ctxFor(t), id, Held{Codec: v.Codec, Size: int64(len(v.Data)), Holders: addrs}.Value()); err != nil {
		t.Fatal(err)
	}
}

// TestStreamThrough: a value only another host holds is readable at once
// (not fetched first) and streams as it is pulled, in chunks, header
// first; the same bytes land in the local store, and the owner is told of
// the copy; the next read is local.
func TestStreamThrough(t *testing.T) {
	c := newCluster(t)
	owner, reader := c.host("a:1", nil), c.host("r:1", nil)
	id := ids.NewTaskID().Return(0)
	v := rawValue(100, 0)
	for i := range v.Data {
		v.Data[i] = byte(i)
	}
	borrowed(t, owner, reader, id, v)
	got, inMemory, err := reader.Readable(ctxFor(t), id)
	if err != nil || inMemory || got.Codec != abi.CodecRaw {
		t.Fatalf("Readable: %v in memory %v, %v", got.Codec, inMemory, err)
	}
	if reader.Here(ctxFor(t), id) || c.pullsFrom("a:1") != 0 {
		t.Fatal("Readable fetched the value before the stream")
	}
	var s streamed
	if err := reader.StreamThrough(ctxFor(t), id, s.send); err != nil {
		t.Fatal(err)
	}
	if s.hdr == nil || s.hdr.Size != 100 || s.hdr.Codec != abi.CodecRaw || !bytes.Equal(s.data, v.Data) {
		t.Fatalf("streamed %+v, %d bytes", s.hdr, len(s.data))
	}
	if s.chunks != 13 { // ChunkBytes 8
		t.Fatalf("%d chunks, want 13 of up to 8 bytes", s.chunks)
	}
	if !reader.Here(ctxFor(t), id) {
		t.Fatal("the pulled copy is not in the local store")
	}
	awaitAdded(t, c, "a:1<-r:1")
	var again streamed
	if err := reader.StreamThrough(ctxFor(t), id, again.send); err != nil || !bytes.Equal(again.data, v.Data) || c.pullsFrom("a:1") != 1 {
		t.Fatalf("the second read: %d bytes, %v, %d pulls", len(again.data), err, c.pullsFrom("a:1"))
	}
}

// TestStreamThroughFallsBack: a holder that fails before the first chunk
// is passed over for the next; one that breaks after chunks were sent
// fails the stream, and no other holder is tried (the reader would get
// bytes twice); nothing partial is stored.
func TestStreamThroughFallsBack(t *testing.T) {
	c := newCluster(t)
	x, y, reader := c.host("x:1", nil), c.host("y:1", nil), c.host("r:1", nil)
	id := ids.NewTaskID().Return(0)
	v := rawValue(40, 'F')
	heldOn(t, reader, id, v, x, y)
	c.mu.Lock()
	c.breakAfter["x:1"] = 0 // fails before any byte
	c.mu.Unlock()
	var s streamed
	if err := reader.StreamThrough(ctxFor(t), id, s.send); err != nil || !bytes.Equal(s.data, v.Data) {
		t.Fatalf("x fails at once, y gives it: %d bytes, %v", len(s.data), err)
	}

	id2 := ids.NewTaskID().Return(0)
	heldOn(t, reader, id2, v, x, y)
	c.mu.Lock()
	c.breakAfter["x:1"] = 20 // breaks half-way
	c.mu.Unlock()
	yBefore := c.pullsFrom("y:1")
	var half streamed
	if err := reader.StreamThrough(ctxFor(t), id2, half.send); !errors.Is(err, errReset) {
		t.Fatalf("a holder breaking half-way: %v, want the break", err)
	}
	if len(half.data) == 0 || len(half.data) > 20 || c.pullsFrom("y:1") != yBefore {
		t.Fatalf("sent %d bytes, pulls from y %d → %d: want part of it, and y not tried", len(half.data), yBefore, c.pullsFrom("y:1"))
	}
	if reader.Here(ctxFor(t), id2) {
		t.Fatal("a broken pull left the object here")
	}
}

// TestStreamThroughClientGone: a reader that goes away mid-stream ends the
// pull with its error; nothing is stored and no other holder is tried.
func TestStreamThroughClientGone(t *testing.T) {
	c := newCluster(t)
	x, y, reader := c.host("x:1", nil), c.host("y:1", nil), c.host("r:1", nil)
	id := ids.NewTaskID().Return(0)
	heldOn(t, reader, id, rawValue(40, 'G'), x, y)
	s := streamed{failAfter: 2}
	if err := reader.StreamThrough(ctxFor(t), id, s.send); !errors.Is(err, errClientGone) {
		t.Fatalf("StreamThrough to a reader gone: %v, want its error", err)
	}
	if reader.Here(ctxFor(t), id) || c.pullsFrom("x:1")+c.pullsFrom("y:1") != 1 {
		t.Fatalf("after the reader left: here %v, %d pulls", reader.Here(ctxFor(t), id), c.pullsFrom("x:1")+c.pullsFrom("y:1"))
	}
}

// TestStreamThroughLyingPeer: a holder announcing fewer bytes than it
// sends gets no byte past its announced size to the reader, and one
// announcing more fails the stream at the end; neither copy is kept.
func TestStreamThroughLyingPeer(t *testing.T) {
	for name, lie := range map[string]Header{
		"more bytes than said":  {Codec: abi.CodecRaw, Size: 10},
		"fewer bytes than said": {Codec: abi.CodecRaw, Size: 400},
		"a negative size":       {Codec: abi.CodecRaw, Size: -1},
	} {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t)
			liar, reader := c.host("l:1", nil), c.host("r:1", nil)
			id := ids.NewTaskID().Return(0)
			heldOn(t, reader, id, rawValue(40, 'L'), liar)
			c.mu.Lock()
			c.lie["l:1"] = lie
			c.mu.Unlock()
			var s streamed
			err := reader.StreamThrough(ctxFor(t), id, s.send)
			if err == nil {
				t.Fatal("a lying holder's stream succeeded")
			}
			if int64(len(s.data)) > max(lie.Size, 0) {
				t.Fatalf("sent %d bytes, past the %d announced", len(s.data), lie.Size)
			}
			if reader.Here(ctxFor(t), id) {
				t.Fatal("a lying holder's bytes were stored")
			}
		})
	}
}

// TestStreamThroughStoreFull: a reader gets every byte even when the local
// store cannot keep the copy; the owner is not told of a copy.
func TestStreamThroughStoreFull(t *testing.T) {
	c := newCluster(t)
	owner := c.host("a:1", nil)
	reader := c.host("r:1", func(cfg *Config) { cfg.Store = fullStore{cfg.Store} })
	id := ids.NewTaskID().Return(0)
	v := rawValue(40, 'S')
	borrowed(t, owner, reader, id, v)
	var s streamed
	if err := reader.StreamThrough(ctxFor(t), id, s.send); err != nil || !bytes.Equal(s.data, v.Data) {
		t.Fatalf("with the store full: %d bytes, %v", len(s.data), err)
	}
	// The pull says the copy was not kept, so the owner is not told of it.
	var again streamed
	kept, err := reader.remote.pull(ctxFor(t), id, "a:1", "a:1", &tee{send: again.send})
	if kept || err != nil || !bytes.Equal(again.data, v.Data) {
		t.Fatalf("a pull into a full store: kept %v, %v, %d bytes; want not kept, no error, every byte", kept, err, len(again.data))
	}
}

// fullStore refuses every new object, as a full store does.
type fullStore struct{ store.Store }

func (fullStore) Create(context.Context, ids.ObjectID, store.Meta) (store.Writer, error) {
	return nil, store.ErrStoreFull
}

// borrowed seals id with v on owner, and has reader borrow it and learn
// that it is ready and held by owner.
func borrowed(t *testing.T, owner, reader *Dir, id ids.ObjectID, v abi.Value) {
	t.Helper()
	owner.Expect(id, id.Task())
	reader.Borrow(ctxFor(t), id, owner.cfg.Self)
	if err := owner.Seal(ctxFor(t), id, v); err != nil {
		t.Fatal(err)
	}
	if _, err := reader.WaitReady(ctxFor(t), []ids.ObjectID{id}, 1, true, -1, nil); err != nil {
		t.Fatal(err)
	}
}

// TestReadableDownHolders: with every holder down, Readable does what
// EnsureLocal does (the owner rebuilds, or the object is lost), so the
// failure is known before the stream.
func TestReadableDownHolders(t *testing.T) {
	c := newCluster(t)
	x, reader := c.host("x:1", nil), c.host("r:1", nil)
	id := ids.NewTaskID().Return(0)
	heldOn(t, reader, id, rawValue(40, 'D'), x)
	c.setDown("x:1")
	if _, _, err := reader.Readable(ctxFor(t), id); !errors.Is(err, ErrLost) {
		t.Fatalf("Readable with its only holder down: %v, want ErrLost", err)
	}
}
