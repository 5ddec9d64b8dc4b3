package objdir

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

// A reader outside the cluster (a client's GetStream) of an object only
// other hosts hold does not wait for the whole pull before its first byte:
// Readable leaves the pull to StreamThrough, which sends each chunk on as
// it arrives from the holder, while the same chunks go into the local store
// (so the next read is local, and the owner learns of the copy).

// Readable is EnsureLocal for a reader that streams: it waits for a pending
// object, and returns a value in memory; a value only other hosts hold is
// not fetched here first if one of its holders is alive (StreamThrough
// pulls it as it streams). Otherwise, as EnsureLocal.
func (d *Dir) Readable(ctx context.Context, id ids.ObjectID) (v abi.Value, inMemory bool, err error) {
	if err := d.waitPending(ctx, id); err != nil {
		return v, false, err
	}
	h, err := d.Holding(ctx, id)
	if err != nil || h.InMemory || h.Local {
		return h.Value, h.InMemory, err
	}
	if d.remote.peers != nil {
		for _, x := range h.Holders {
			if x != d.cfg.Self && d.remote.peers.Alive(x) {
				return h.Value, false, nil
			}
		}
	}
	return d.EnsureLocal(ctx, id)
}

// waitPending waits for id if it is pending here (being made, rebuilt or
// resolved from its owner).
func (d *Dir) waitPending(ctx context.Context, id ids.ObjectID) error {
	d.mu.Lock()
	ob := d.m[id]
	pending := ob != nil && !ob.ready
	d.mu.Unlock()
	if !pending {
		return nil
	}
	_, err := d.WaitReady(ctx, []ids.ObjectID{id}, 1, true, -1, nil)
	return err
}

// StreamThrough sends id's bytes chunk by chunk, as Stream does: from this
// host, or, when only other hosts hold them, as they are pulled from one of
// them into the local store, each chunk sent on as it arrives. A pull that
// fails before the first chunk was sent falls back to EnsureLocal (another
// holder, the owner asked again, the object rebuilt); one that fails after
// fails the stream (the reader has part of the bytes). Errors from send
// are returned as they are.
func (d *Dir) StreamThrough(ctx context.Context, id ids.ObjectID, send func(hdr *Header, chunk []byte) error) error {
	h, err := d.Holding(ctx, id)
	if err != nil {
		return err
	}
	if h.InMemory {
		return send(&Header{Codec: h.Value.Codec, Size: int64(len(h.Value.Data))}, h.Value.Data)
	}
	if !h.Local && d.remote.peers != nil && len(h.Holders) > 0 {
		d.mu.Lock()
		owner := d.ownerOfLocked(id)
		d.mu.Unlock()
		t := &tee{send: send}
		_, err := d.remote.pullFromAny(ctx, id, h.Holders, owner, t)
		if err == nil || t.started() || ctx.Err() != nil {
			return err
		}
		v, inMemory, err := d.EnsureLocal(ctx, id)
		if err != nil {
			return err
		}
		if inMemory {
			return send(&Header{Codec: v.Codec, Size: int64(len(v.Data))}, v.Data)
		}
	}
	return d.Stream(ctx, id, send)
}

// tee passes the chunks of a pull on to a reader as they arrive.
type tee struct {
	send func(hdr *Header, chunk []byte) error
	sent bool // a chunk went to send: the pull cannot start over elsewhere
	// dropped: the local store failed to take the copy (full, say); the
	// reader still gets every byte.
	dropped error
}

func (t *tee) started() bool { return t != nil && t.sent }

// errPullSize: a holder sent other than the bytes its header announced.
var errPullSize = errors.New("the holder sent other than the size it announced")

// copy reads the bytes hdr announces from rc in chunks of up to chunk
// bytes, writes each to w (nil: none; one that fails is dropped, noted in
// t.dropped) and sends it on, the header with the first (an empty value is
// one empty chunk). The store's writes run beside the sends, a few chunks
// behind at most. A holder that sends more or fewer bytes than announced
// fails it, before any byte past the size is sent on.
func (t *tee) copy(hdr Header, rc io.Reader, w store.Writer, chunk int) error {
	const ring = 4 // chunks in memory: read and sent, or waiting for the store
	size := int(min(int64(chunk), max(hdr.Size, 1)))
	bufs := make([][]byte, ring)
	free := make(chan int, ring)
	for i := range ring {
		free <- i
	}
	type slot struct {
		i int
		b []byte
	}
	var toStore chan slot
	stored := make(chan error, 1)
	if w != nil {
		toStore = make(chan slot, ring)
		go func() {
			var err error
			for s := range toStore {
				if err == nil {
					_, err = w.Write(s.b)
				}
				free <- s.i
			}
			stored <- err
		}()
	}
	err := t.copyChunks(hdr, rc, size, func(first bool, read func([]byte) (int, error)) error {
		i := <-free
		if bufs[i] == nil {
			bufs[i] = make([]byte, size)
		}
		n, err := read(bufs[i])
		if err != nil {
			free <- i
			return err
		}
		b := bufs[i][:n]
		var h *Header
		if first {
			h = &hdr
		}
		t.sent = true
		err = t.send(h, b)
		if toStore != nil {
			toStore <- slot{i, b} // sent first: the store's write runs while the next chunk is read
		} else {
			free <- i
		}
		return err
	})
	if toStore != nil {
		close(toStore)
		if werr := <-stored; werr != nil {
			_ = w.Abort()
			t.dropped = werr
		}
	}
	return err
}

// copyChunks reads the bytes hdr announces from rc, a chunk of up to size
// bytes at a time, through each: each reads its chunk with read into a
// buffer of its own. A holder that sends more or fewer bytes than
// announced fails it.
func (t *tee) copyChunks(hdr Header, rc io.Reader, size int, each func(first bool, read func([]byte) (int, error)) error) error {
	var got int64
	for first := true; ; first = false {
		want := int(min(int64(size), hdr.Size-got))
		if want == 0 && !first {
			// Nothing may follow the announced bytes.
			var one [1]byte
			if m, _ := io.ReadFull(rc, one[:]); m > 0 {
				return fmt.Errorf("%w: more than %d bytes", errPullSize, hdr.Size)
			}
			return nil
		}
		err := each(first, func(buf []byte) (int, error) {
			n, err := io.ReadFull(rc, buf[:want])
			got += int64(n)
			if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
				return n, err
			}
			if n < want {
				return n, fmt.Errorf("%w: %d of %d bytes", errPullSize, got, hdr.Size)
			}
			return n, nil
		})
		if err != nil {
			return err
		}
	}
}
