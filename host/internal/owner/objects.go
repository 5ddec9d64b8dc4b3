package owner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/host/internal/cluster"
	"github.com/rayhost/rayhost/host/internal/objdir"
	"github.com/rayhost/rayhost/host/internal/peerwire"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/kinds"
	"github.com/rayhost/rayhost/store"
)

// The host's objects live in an objdir.Dir (h.objs). This file binds it to
// the host: its configuration, the Peers it reaches other hosts through
// (the host's peer connections), and the conversions between its values
// and the Connect messages.

// errCancelled ends a wait because the waiting task was cancelled.
var errCancelled = objdir.ErrCancelled

// newObjects makes the host's object directory. h.addr must be set.
func (h *Owner) newObjects() (*objdir.Dir, error) {
	cfg := objdir.DefaultConfig(h.st)
	cfg.InlineLimit, cfg.CacheBytes = h.cfg.InlineObjectLimit, h.cfg.MemoryCacheBytes
	cfg.LargeMemoryBytes, cfg.PersistAfter = h.cfg.LargeObjectMemory, h.cfg.LargeObjectPersistAfter
	cfg.Self, cfg.ID, cfg.Logger = h.addr, h.cfg.ID, h.log
	cfg.ChunkBytes = getStreamChunk
	cfg.Rebuild = h.lin.reconstruct
	cfg.Done = h.done
	cfg.Restarted = h.cfg.Restarted
	if h.cfg.Clustered {
		cfg.Peers = hostPeers{h}
	}
	return objdir.New(cfg)
}

// storeErrorKind is the kind of task error a failed store write becomes: a
// full store is a limit (resource_exhausted), anything else a host fault.
func storeErrorKind(err error) abi.ErrorKind {
	if errors.Is(err, store.ErrStoreFull) {
		return abi.ErrorLimit
	}
	return abi.ErrorHost
}

// mergeCancel returns a context that ends when either a or b does.
func mergeCancel(a, b context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(a)
	stop := context.AfterFunc(b, cancel)
	return ctx, func() { stop(); cancel() }
}

// hostPeers is objdir.Peers over the host's connections to its peers.
type hostPeers struct{ h *Owner }

// notFoundAt marks a peer's CodeNotFound answer as objdir.ErrNotFound,
// and as objdir.ErrOwnerDied too when the peer names that kind (it owns
// the object, and restarted since it could have made it).
func notFoundAt(err error) error {
	if connect.CodeOf(err) != connect.CodeNotFound {
		return err
	}
	var kind string
	var ce *connect.Error
	if errors.As(err, &ce) {
		kind = ce.Meta().Get(kinds.Header)
	}
	return notHeld(kind, err)
}

// notHeld is err, a holder's or an owner's answer that it has no such
// object, as objdir's sentinel: freed, or not found (and its owner died)
// as kind (kinds.Header's value) says.
func notHeld(kind string, err error) error {
	switch kinds.Named(kind) {
	case kinds.ErrOwnerDied:
		return fmt.Errorf("%w: %w: %w", objdir.ErrNotFound, objdir.ErrOwnerDied, err)
	case kinds.ErrObjectFreed:
		return fmt.Errorf("%w: %w", objdir.ErrFreed, err)
	}
	return fmt.Errorf("%w: %w", objdir.ErrNotFound, err)
}

func (p hostPeers) Locate(ctx context.Context, owner string, id ids.ObjectID, failed []string, timeout time.Duration) (objdir.Location, error) {
	pc, err := p.h.rem.awaitMember(ctx, owner)
	if err != nil {
		if ctx.Err() != nil {
			return objdir.Location{}, ctx.Err()
		}
		return objdir.Location{}, fmt.Errorf("%w: %v", objdir.ErrUnreachable, err)
	}
	ctx, cancel := mergeCancel(ctx, pc.ctx)
	defer cancel()
	ms := int64(-1)
	if timeout >= 0 {
		ms = timeout.Milliseconds()
	}
	res, err := pc.api.Locate(ctx, connect.NewRequest(&rayhostv1.LocateRequest{Id: id.String(), FailedHolders: failed, TimeoutMs: ms, From: p.h.addr}))
	if err != nil {
		return objdir.Location{}, notFoundAt(err)
	}
	m := res.Msg
	return objdir.Location{Ready: m.GetReady(), Codec: m.GetCodec(), Inline: m.GetInline(), Data: m.GetData(), Size: m.GetSize(), Holders: m.GetHolders()}, nil
}

// Pull asks the holder at from for id's bytes on the peer protocol's raw
// route (peerwire.PullBytesPath): the header from the answer's headers,
// the bytes as its body (which tee.copy checks against the size).
func (p hostPeers) Pull(ctx context.Context, from string, id ids.ObjectID) (objdir.Header, io.ReadCloser, error) {
	pc, err := p.h.rem.reach(from)
	if err != nil {
		return objdir.Header{}, nil, err
	}
	ctx, cancel := mergeCancel(ctx, pc.ctx)
	res, err := pc.raw.Get(ctx, peerwire.PullBytesPath, url.Values{"id": {id.String()}})
	if err != nil {
		cancel()
		return objdir.Header{}, nil, rawNotFound(err)
	}
	hdr, err := pullHeader(res)
	if err != nil {
		res.Body.Close()
		cancel()
		return objdir.Header{}, nil, fmt.Errorf("pulling %s from %s: %w", id, from, err)
	}
	return hdr, &pullBody{ReadCloser: res.Body, cancel: cancel}, nil
}

// errPullHeader: a holder's answer to a pull that does not say the
// object's codec and size.
var errPullHeader = errors.New("bad header")

// pullHeader reads the header of a pull's answer: the codec it names and
// its Content-Length (an answer without one, chunked, is refused: the
// size is what the puller admits into its store and checks the bytes
// against).
func pullHeader(res *http.Response) (objdir.Header, error) {
	codec, ok := objdir.CodecNamed(res.Header.Get(peerwire.CodecHeader))
	switch {
	case !ok:
		return objdir.Header{}, fmt.Errorf("%w: codec %q", errPullHeader, res.Header.Get(peerwire.CodecHeader))
	case res.ContentLength < 0:
		return objdir.Header{}, fmt.Errorf("%w: no Content-Length", errPullHeader)
	}
	return objdir.Header{Codec: codec, Size: res.ContentLength}, nil
}

// rawNotFound is notFoundAt for a raw call's error: a 404 is the holder
// not holding the bytes (objdir.ErrNotFound, and the kind it named).
func rawNotFound(err error) error {
	var re *cluster.RawError
	if !errors.As(err, &re) || re.Status != http.StatusNotFound {
		return err
	}
	return notHeld(re.Kind, err)
}

// pullBody is a pull's body; closing it ends the call.
type pullBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *pullBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

func (p hostPeers) AddLocation(ctx context.Context, owner string, id ids.ObjectID, holder string) error {
	pc, err := p.h.rem.reach(owner)
	if err != nil {
		return err
	}
	ctx, cancel := mergeCancel(ctx, pc.ctx)
	defer cancel()
	_, err = pc.api.AddLocation(ctx, connect.NewRequest(&rayhostv1.AddLocationRequest{Id: id.String(), Holder: holder}))
	return err
}

func (p hostPeers) Down(addr string) bool  { return p.h.rem.peerDown(addr) }
func (p hostPeers) Alive(addr string) bool { return p.h.rem.hostAlive(addr) }

// protoSender adapts a sender of Connect chunks to objdir's Serve and
// Stream: their errors become Connect errors, the sender's stay as they
// are.
type protoSender struct {
	to  func(*rayhostv1.ObjectHeader, []byte) error
	err error // the last error of to
}

func (s *protoSender) send(hdr *objdir.Header, chunk []byte) error {
	var ph *rayhostv1.ObjectHeader
	if hdr != nil {
		ph = &rayhostv1.ObjectHeader{Codec: hdr.Codec.String(), Size: hdr.Size}
	}
	s.err = s.to(ph, chunk)
	return s.err
}

func (s *protoSender) result(err error) error {
	if err == nil || (s.err != nil && err == s.err) {
		return err
	}
	return toConnect(err)
}

// streamFromStore sends an object chunk by chunk (never whole), the header
// with the first chunk: from the store, or as it is pulled from a peer.
func (h *Owner) streamFromStore(ctx context.Context, id ids.ObjectID, send func(*rayhostv1.ObjectHeader, []byte) error) error {
	s := &protoSender{to: send}
	return s.result(h.objs.StreamThrough(ctx, id, s.send))
}
