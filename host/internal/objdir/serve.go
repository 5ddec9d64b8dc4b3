package objdir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

// The server side of the peer protocol's object calls: what this host
// answers when another host's Peers asks it.

// Locate answers a peer asking about id (Peers.Locate): it forgets the
// holders in failed, waits up to timeout (< 0: no limit, 0: answer at once)
// for id to be ready, and says where it is: inline if in memory, else the
// hosts that hold it (this one if stored here, others only if alive). If
// every copy is gone, it has the object rebuilt (Config.Rebuild) and waits
// again; if it cannot be, the answer is an inline failure of kind
// object_lost or owner_died. Not ready in time is a Location that is not
// Ready; an object unknown here is ErrNotFound (wrapping ErrOwnerDied too
// if this host restarted: restart.go).
func (d *Dir) Locate(ctx context.Context, id ids.ObjectID, failed []string, timeout time.Duration) (Location, error) {
	if len(failed) > 0 {
		d.DropHolders(id, failed)
	}
	if !d.Known(ctx, id) {
		if err := d.diedHere(id); err != nil {
			return Location{}, err // owner_died too: this host restarted
		}
		return Location{}, d.notFound(id) // or freed: the reader says which
	}
	for {
		_, err := d.WaitReady(ctx, []ids.ObjectID{id}, 1, false, timeout, nil)
		if errors.Is(err, ErrTimeout) {
			return Location{}, nil
		}
		if err != nil {
			return Location{}, err
		}
		h, err := d.Holding(ctx, id)
		if err != nil {
			return Location{}, err
		}
		loc := Location{Ready: true, Codec: h.Value.Codec.String(), Size: h.Size}
		if h.InMemory {
			loc.Inline, loc.Data = true, h.Value.Data
			return loc, nil
		}
		if h.Local {
			loc.Holders = append(loc.Holders, d.cfg.Self)
		}
		for _, x := range h.Holders {
			if x != d.cfg.Self && d.remote.peers != nil && d.remote.peers.Alive(x) {
				loc.Holders = append(loc.Holders, x)
			}
		}
		if len(loc.Holders) > 0 {
			return loc, nil
		}
		// Every copy is gone: rebuild it, then answer with the new one.
		if err := d.remote.rebuild(id); err != nil {
			te := &abi.TaskError{Kind: abi.ErrorObjectLost, TaskID: id.Task().String(), Host: d.cfg.ID, Message: err.Error()}
			if errors.Is(err, ErrOwnerDied) {
				te.Kind = abi.ErrorOwnerDied
			}
			lost := te.Encode()
			return Location{Ready: true, Codec: lost.Codec.String(), Inline: true, Data: lost.Data, Size: int64(len(lost.Data))}, nil
		}
	}
}

// Serve sends id's bytes to a peer pulling them (Peers.Pull): the value in
// one chunk if it is in memory, else chunk by chunk from the store. An
// object whose bytes are not here is ErrNotFound. Errors from send are
// returned as they are.
func (d *Dir) Serve(ctx context.Context, id ids.ObjectID, send func(hdr *Header, chunk []byte) error) error {
	h, err := d.Holding(ctx, id)
	switch {
	case err != nil:
		return err
	case h.InMemory:
		return send(&Header{Codec: h.Value.Codec, Size: int64(len(h.Value.Data))}, h.Value.Data)
	case !h.Local:
		return fmt.Errorf("%w: %s: not held here", ErrNotFound, id)
	}
	return d.Stream(ctx, id, send)
}

// Stream sends a stored object chunk by chunk (never whole, chunks of
// Config.ChunkBytes), the header with the first chunk (an empty value is
// one empty chunk). An object not in the store is ErrNotFound. Errors from
// send are returned as they are.
func (d *Dir) Stream(ctx context.Context, id ids.ObjectID, send func(hdr *Header, chunk []byte) error) error {
	if w, ok := d.writingOf(id); ok && !d.deleted(id) {
		// In the memory tier: its chunks are sent from where they are.
		hdr := &Header{Codec: abi.Codec(w.meta.Codec), Size: w.meta.Size}
		for off := 0; off == 0 || off < len(w.data); off += d.cfg.ChunkBytes {
			if err := send(hdr, w.data[off:min(off+d.cfg.ChunkBytes, len(w.data))]); err != nil {
				return err
			}
			hdr = nil
		}
		return nil
	}
	meta, rc, err := d.open(ctx, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			err = fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return err
	}
	defer rc.Close()
	header := &Header{Codec: abi.Codec(meta.Codec), Size: meta.Size}
	buf := make([]byte, d.cfg.ChunkBytes)
	for first := true; ; first = false {
		n, rerr := io.ReadFull(rc, buf)
		if n > 0 || first {
			var hdr *Header
			if first {
				hdr = header
			}
			if err := send(hdr, buf[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
