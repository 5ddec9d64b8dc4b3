package objdir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

// Peers is how a Dir reaches the other hosts of its cluster: the client
// side of the peer protocol's object calls. The host implements it over
// its connections to its peers; the other host answers with its own Dir's
// Locate and Serve.
type Peers interface {
	// Locate asks the host at owner, once, about id: whether it is ready
	// (waiting up to timeout for it; < 0: no limit, 0: answer at once),
	// and its value or where it is held. failed names holders that had no
	// copy, for the owner to forget. An owner that is gone or no member
	// gives an error wrapping ErrUnreachable; one that does not know id,
	// ErrNotFound (and ErrOwnerDied too if it restarted since: see
	// restart.go). Other errors (a broken connection) are tried again.
	Locate(ctx context.Context, owner string, id ids.ObjectID, failed []string, timeout time.Duration) (Location, error)
	// Pull opens id's bytes on the host at from: the header, then a reader
	// of exactly the bytes (its Read or WriteTo fails if the transfer
	// breaks). A host that holds no copy gives an error wrapping
	// ErrNotFound. The caller closes the reader.
	Pull(ctx context.Context, from string, id ids.ObjectID) (Header, io.ReadCloser, error)
	// AddLocation tells the host at owner that holder now has a copy of id.
	AddLocation(ctx context.Context, owner string, id ids.ObjectID, holder string) error
	// FreeCopies tells the host at addr that this host, their owner, freed
	// objs: it deletes its copies (Dir.OwnerFreed).
	FreeCopies(ctx context.Context, addr string, objs []ids.ObjectID) error
	// Down reports whether the host at addr is known to have failed or
	// left, or is no member at all (never this host).
	Down(addr string) bool
	// Alive reports whether the host at addr is a member that is alive.
	Alive(addr string) bool
}

// Location is an owner's answer to Locate.
type Location struct {
	// Ready: the object is ready; nothing else is set if not.
	Ready bool
	// Codec is the name of the value's codec (abi.Codec.String), as the
	// peer protocol carries it.
	Codec string
	// Inline: Data is the value itself (a small value, or a failure).
	Inline bool
	Data   []byte
	// Size is the value's size in bytes.
	Size int64
	// Holders are the hosts that hold the bytes of a value not inline.
	Holders []string
}

// Header describes the bytes Pull and Serve send.
type Header struct {
	Codec abi.Codec
	Size  int64
}

// unknownGrace is how long an owner may not know an object before it
// counts as not found (Config.UnknownGrace overrides it in tests).
const unknownGrace = 10 * time.Second

// resolveWait is how long one Locate of a borrow waits at the owner.
const resolveWait = 20 * time.Second

// remote is the client side of the peer protocol: how a Dir reaches the
// objects on other hosts, and the background work that takes (resolving
// borrowed refs, telling owners of new copies). It has its own lock, never
// held with the Dir's.
type remote struct {
	d     *Dir
	peers Peers         // nil outside a cluster
	stop  chan struct{} // closed by close: background work ends

	mu     sync.Mutex
	closed bool // no new background work
	bg     sync.WaitGroup
}

// close ends the background work and waits for it.
func (r *remote) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	close(r.stop)
	r.bg.Wait()
}

// goBackground runs fn in the background with a context that ends when the
// Dir closes (or Config.Done does). It does nothing once the Dir is closed.
func (r *remote) goBackground(fn func(ctx context.Context)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.bg.Add(1) // under the lock: close waits for it before the Dir stops persisting
	go func() {
		defer r.bg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-r.stop:
			case <-r.d.cfg.Done:
			case <-ctx.Done():
			}
			cancel()
		}()
		fn(ctx)
	}()
}

// rebuild has a lost object this host owns made anew (Config.Rebuild).
func (r *remote) rebuild(id ids.ObjectID) error {
	if r.d.cfg.Rebuild == nil {
		return fmt.Errorf("%w: %s: its only copies were on hosts that are gone", ErrLost, id)
	}
	return r.d.cfg.Rebuild(id)
}

// Fetch brings id's bytes here from one of holders. If none can give them,
// the owner rebuilds the object: this host (owner "" or Self), through
// Config.Rebuild, or the owner elsewhere, asked again with the holders that
// failed. It fails with an error wrapping ErrLost or ErrOwnerDied when the
// bytes are gone for good.
func (d *Dir) Fetch(ctx context.Context, id ids.ObjectID, holders []string, owner string) error {
	return d.remote.fetch(ctx, id, holders, owner)
}

func (r *remote) fetch(ctx context.Context, id ids.ObjectID, holders []string, owner string) error {
	d := r.d
	failed, err := r.pullFromAny(ctx, id, holders, owner, nil)
	if err == nil || ctx.Err() != nil {
		return err
	}
	if owner == "" || owner == d.cfg.Self {
		return r.rebuild(id)
	}
	// Ask the owner where it is now; it rebuilds it if every copy is gone.
	loc, err := r.locate(ctx, id, owner, failed, -1)
	if err != nil {
		return err
	}
	v, err := valueOf(loc)
	if err != nil {
		return fmt.Errorf("%w: %s: its owner says: %v", ErrLost, id, err)
	}
	if v.Codec == abi.CodecError {
		// Lost, or its owner died: an answer about now, not the value
		// (refilled, it would stay after the copies come back).
		te := abi.DecodeTaskError(v.Data)
		kind := ErrLost
		if te.Kind == abi.ErrorOwnerDied {
			kind = ErrOwnerDied
		}
		return &ownerAnswer{te: te, kind: kind}
	}
	d.refill(id, v)
	return nil
}

// pullFromAny pulls id from the first of holders that gives it, and tells
// the owner this host now holds it too. It returns the holders that have
// no copy (they answered so), which are forgotten; a holder that is down,
// or failed otherwise (a slow link, say), is kept and tried again another
// time: a host that comes back on its data dir still has its copies.
//
// With a tee, each chunk goes on to it as it arrives (pullthrough.go); once
// one has, a failure is not tried on another holder.
func (r *remote) pullFromAny(ctx context.Context, id ids.ObjectID, holders []string, owner string, t *tee) (failed []string, err error) {
	d := r.d
	if r.peers == nil {
		return nil, fmt.Errorf("%w: %s is held by other hosts and this one is in no cluster", ErrLost, id)
	}
	var last error
	for _, x := range holders {
		if x == d.cfg.Self {
			continue
		}
		if r.peers.Down(x) {
			continue
		}
		kept, err := r.pull(ctx, id, x, owner, t)
		if last = err; last == nil {
			if kept && owner != "" && owner != d.cfg.Self {
				r.goBackground(func(ctx context.Context) { r.tellOwner(ctx, id, owner) })
			}
			return nil, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if t.started() {
			return nil, fmt.Errorf("pulling %s from %s: %w", id, x, last)
		}
		// A holder that says it has no copy is forgotten; one that failed
		// otherwise (a reset connection, a crash) may still have it.
		if errors.Is(last, ErrNotFound) {
			failed = append(failed, x)
		}
	}
	d.DropHolders(id, failed)
	if last == nil {
		last = errors.New("no host holding it is alive")
	}
	return failed, fmt.Errorf("%w: %s: %v", ErrLost, id, last)
}

// pull copies id, owned by owner ("": this host), from the host at from
// into the local store, chunk by chunk: a large object is never whole in
// this host's memory. The copy is recorded as owner's (copies.go). With a
// tee, the chunks also go on to it as they arrive; then a copy the store
// could not keep is no failure (kept is false): the reader has its bytes.
func (r *remote) pull(ctx context.Context, id ids.ObjectID, from, owner string, t *tee) (kept bool, err error) {
	ctx, wd := r.d.watchPull(ctx, from)
	defer func() {
		if wd.stop() && err != nil {
			err = wd.err() // the stall, not the cancel it caused
		}
	}()
	hdr, rc, err := r.peers.Pull(ctx, from, id)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	rc = wd.reader(rc)
	if owner == "" {
		owner = r.d.cfg.Self
	}
	if !hdr.Codec.Valid() || hdr.Size < 0 || (hdr.Codec == abi.CodecInts && hdr.Size%8 != 0) {
		return false, fmt.Errorf("pulling %s from %s: bad header", id, from)
	}
	w, err := r.d.st.Create(ctx, id, store.Meta{Size: hdr.Size, Codec: store.Codec(hdr.Codec), Owner: owner, Task: id.Task(), Created: time.Now()})
	if err != nil {
		if t == nil {
			return false, err
		}
		r.d.log.Warn("not keeping a pulled copy", "object_id", id, "err", err)
		w = nil
	}
	if w != nil {
		defer w.Abort()
	}
	if t == nil {
		if _, err := io.Copy(w, rc); err != nil {
			return false, err
		}
		if err := w.Commit(ctx); err != nil {
			return false, err
		}
		r.d.freedWhilePulled(id)
		return true, nil
	}
	if err := t.copy(hdr, rc, w, r.d.cfg.ChunkBytes); err != nil {
		return false, err
	}
	if w == nil || t.dropped != nil {
		if t.dropped != nil {
			r.d.log.Warn("not keeping a pulled copy", "object_id", id, "err", t.dropped)
		}
		return false, nil
	}
	if err := w.Commit(ctx); err != nil {
		r.d.log.Warn("not keeping a pulled copy", "object_id", id, "err", err)
		return false, nil
	}
	r.d.freedWhilePulled(id)
	return true, nil
}

// freedWhilePulled deletes the copy of id just committed if its owner
// freed it while it was pulled: the delete of that Free may have run
// before the commit, and nothing else would ever delete the copy. (The
// tombstone is set before a Free's delete is queued, so either it is seen
// here, or that delete is queued after the commit and deletes it.)
func (d *Dir) freedWhilePulled(id ids.ObjectID) {
	d.mu.Lock()
	if !d.freed.has(id) {
		d.mu.Unlock()
		return
	}
	d.deleting[id]++
	d.mu.Unlock()
	d.hand(persistJob{id: id, del: true})
}

// tellOwner records at the owner that this host holds a copy of id.
func (r *remote) tellOwner(ctx context.Context, id ids.ObjectID, owner string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := r.peers.AddLocation(ctx, owner, id, r.d.cfg.Self); err != nil {
		r.d.log.Debug("telling an owner about a copy", "object_id", id, "owner", owner, "err", err)
	}
}

// locate asks owner about id until it answers, waiting up to timeout (< 0:
// no limit) for it to be ready. A gone owner gives ErrOwnerDied (wrapping
// ErrUnreachable: it may come back); one that does not know id for
// UnknownGrace, ErrNotFound, or ErrOwnerDied if it restarted since it
// could have made id.
func (r *remote) locate(ctx context.Context, id ids.ObjectID, owner string, failed []string, timeout time.Duration) (Location, error) {
	var unknownSince time.Time
	for attempt := 0; ; attempt++ {
		loc, err := r.peers.Locate(ctx, owner, id, failed, timeout)
		if err == nil {
			return loc, nil
		}
		if ctx.Err() != nil {
			return Location{}, ctx.Err()
		}
		if errors.Is(err, ErrUnreachable) {
			return Location{}, fmt.Errorf("%w: %s owns %s: %w", ErrOwnerDied, owner, id, err)
		}
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrFreed) {
			// A ref can reach here before its owner registered it (a
			// guest's submit is relayed to the owner while the guest goes
			// on): unknown counts as not yet known for a while.
			if unknownSince.IsZero() {
				unknownSince = time.Now()
			}
			if time.Since(unknownSince) > r.d.cfg.UnknownGrace {
				if errors.Is(err, ErrFreed) {
					// Asked again through the grace all the same: the
					// owner's record of frees is a Bloom filter, whose
					// false positive must not fail an object on its way.
					return Location{}, fmt.Errorf("%w: its owner %s freed it", err, owner)
				}
				if errors.Is(err, ErrOwnerDied) {
					return Location{}, fmt.Errorf("%w: %s: its owner %s restarted and has no record of it", ErrOwnerDied, id, owner)
				}
				return Location{}, fmt.Errorf("%w: %s (its owner %s does not know it)", ErrNotFound, id, owner)
			}
		}
		if !sleepCtx(ctx, min(time.Duration(attempt+1)*100*time.Millisecond, time.Second)) {
			return Location{}, ctx.Err()
		}
	}
}

// sleepCtx waits d, or less if ctx ends first (then it reports false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// resolve learns from owner what a borrowed object is once it is ready,
// and seals it here: its value if small, else where it is held, or the
// failure (owner died, not found, a bad answer). An owner that cannot be
// reached, or that says the object is lost, is sealed provisionally
// (provisional.go).
func (r *remote) resolve(ctx context.Context, id ids.ObjectID, owner string) {
	d := r.d
	for {
		loc, err := r.locate(ctx, id, owner, nil, resolveWait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			te := &abi.TaskError{Kind: abi.ErrorOwnerDied, TaskID: id.Task().String(), Message: err.Error()}
			switch {
			case errors.Is(err, ErrUnreachable):
				d.sealProvisional(id, te.Encode())
				return
			case errors.Is(err, ErrOwnerDied):
				// It restarted and has no record of it: for good.
			case errors.Is(err, ErrFreed):
				te.Kind = abi.ErrorObjectFreed
			case errors.Is(err, ErrNotFound):
				te.Kind = abi.ErrorBadRequest
			}
			_ = d.Seal(ctx, id, te.Encode())
			return
		}
		if !loc.Ready {
			continue
		}
		v, err := valueOf(loc)
		if err != nil {
			d.log.Warn("an owner described an object badly", "object_id", id, "owner", owner, "err", err)
			_ = d.Seal(ctx, id, (&abi.TaskError{Kind: abi.ErrorHost, TaskID: id.Task().String(), Message: err.Error()}).Encode())
			return
		}
		if provisional(v) {
			d.sealProvisional(id, v)
			return
		}
		if err := d.Seal(ctx, id, v); err != nil {
			d.log.Error("sealing a borrowed object", "object_id", id, "err", err)
		}
		return
	}
}

// valueOf turns an owner's answer into a value to seal: the bytes, or
// (CodecHeld) where they are.
func valueOf(loc Location) (abi.Value, error) {
	codec, ok := CodecNamed(loc.Codec)
	if !ok {
		return abi.Value{}, fmt.Errorf("codec %q", loc.Codec)
	}
	if codec == abi.CodecInts && ((loc.Inline && len(loc.Data)%8 != 0) || (!loc.Inline && (loc.Size < 0 || loc.Size%8 != 0))) {
		return abi.Value{}, fmt.Errorf("an ints value of %d bytes", max(int64(len(loc.Data)), loc.Size))
	}
	if loc.Inline {
		return abi.Value{Codec: codec, Data: loc.Data}, nil
	}
	if len(loc.Holders) == 0 || codec == abi.CodecError {
		return abi.Value{}, errors.New("no holders")
	}
	return Held{Codec: codec, Size: loc.Size, Holders: slices.Clone(loc.Holders)}.Value(), nil
}

// ownerAnswer is an owner's answer that an object is lost or that its owner
// died, kept whole (which host said it) for Get; it wraps ErrLost or
// ErrOwnerDied.
type ownerAnswer struct {
	te   *abi.TaskError
	kind error
}

func (e *ownerAnswer) Error() string {
	return fmt.Sprintf("%v: its owner says: %s", e.kind, e.te.Message)
}
func (e *ownerAnswer) Unwrap() error { return e.kind }
