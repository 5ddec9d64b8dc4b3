package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

// peerAPI implements the PeerService hosts call on each other.
type peerAPI struct{ h *Host }

func (p *peerAPI) Execute(ctx context.Context, stream *connect.BidiStream[rayhostv1.ExecuteRequest, rayhostv1.ExecuteResponse]) error {
	return p.h.execute(ctx, stream)
}

func codecNamed(s string) (abi.Codec, bool) {
	for c := abi.CodecJSON; c <= abi.CodecError; c++ {
		if c.String() == s {
			return c, true
		}
	}
	return 0, false
}

func (p *peerAPI) Locate(ctx context.Context, req *connect.Request[rayhostv1.LocateRequest]) (*connect.Response[rayhostv1.LocateResponse], error) {
	h := p.h
	id, err := ids.ParseObjectID(req.Msg.GetId())
	if err != nil {
		return nil, invalid("%v", err)
	}
	if len(req.Msg.GetFailedHolders()) > 0 {
		h.objs.dropHolders(id, req.Msg.GetFailedHolders())
	}
	if !h.objs.known(ctx, id) {
		return nil, toConnect(fmt.Errorf("%w: %s", ErrObjectNotFound, id))
	}
	for {
		timeout := time.Duration(req.Msg.GetTimeoutMs()) * time.Millisecond // 0: answer at once
		if req.Msg.GetTimeoutMs() < 0 {
			timeout = -1
		}
		ready, err := h.objs.waitReady(ctx, []ids.ObjectID{id}, 1, false, timeout, nil)
		if errors.Is(err, ErrGetTimeout) {
			return connect.NewResponse(&rayhostv1.LocateResponse{}), nil
		}
		if err != nil {
			return nil, toConnect(err)
		}
		_ = ready
		v, inMemory, local, holders, size, err := h.objs.holding(ctx, id)
		if err != nil {
			return nil, toConnect(err)
		}
		res := &rayhostv1.LocateResponse{Ready: true, Codec: v.Codec.String(), Size: size}
		if inMemory {
			res.Inline, res.Data = true, v.Data
			return connect.NewResponse(res), nil
		}
		if local {
			res.Holders = append(res.Holders, h.addr)
		}
		for _, x := range holders {
			if x != h.addr && h.hostAlive(x) {
				res.Holders = append(res.Holders, x)
			}
		}
		if len(res.Holders) > 0 {
			return connect.NewResponse(res), nil
		}
		// Every copy is gone: rebuild it, then answer with the new one.
		if err := h.reconstruct(id); err != nil {
			te := &abi.TaskError{Kind: abi.ErrorObjectLost, TaskID: id.Task().String(), Host: h.cfg.ID, Message: err.Error()}
			if errors.Is(err, ErrOwnerDied) {
				te.Kind = abi.ErrorOwnerDied
			}
			lost := te.Encode()
			return connect.NewResponse(&rayhostv1.LocateResponse{Ready: true, Codec: lost.Codec.String(), Inline: true, Data: lost.Data, Size: int64(len(lost.Data))}), nil
		}
	}
}

func (p *peerAPI) Pull(ctx context.Context, req *connect.Request[rayhostv1.PullRequest], stream *connect.ServerStream[rayhostv1.PullResponse]) error {
	h := p.h
	id, err := ids.ParseObjectID(req.Msg.GetId())
	if err != nil {
		return invalid("%v", err)
	}
	v, inMemory, local, _, _, err := h.objs.holding(ctx, id)
	switch {
	case err != nil:
		return toConnect(err)
	case inMemory:
		return stream.Send(&rayhostv1.PullResponse{Header: &rayhostv1.ObjectHeader{Codec: v.Codec.String(), Size: int64(len(v.Data))}, Chunk: v.Data})
	case !local:
		return toConnect(fmt.Errorf("%w: %s: not held here", ErrObjectNotFound, id))
	}
	return h.streamFromStore(ctx, id, func(hdr *rayhostv1.ObjectHeader, chunk []byte) error {
		return stream.Send(&rayhostv1.PullResponse{Header: hdr, Chunk: chunk})
	})
}

// streamFromStore sends a stored object chunk by chunk (never whole), the
// header with the first chunk.
func (h *Host) streamFromStore(ctx context.Context, id ids.ObjectID, send func(*rayhostv1.ObjectHeader, []byte) error) error {
	meta, rc, err := h.st.Open(ctx, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			err = fmt.Errorf("%w: %s", ErrObjectNotFound, id)
		}
		return toConnect(err)
	}
	defer rc.Close()
	header := &rayhostv1.ObjectHeader{Codec: abi.Codec(meta.Codec).String(), Size: meta.Size}
	buf := make([]byte, getStreamChunk)
	for first := true; ; first = false {
		n, rerr := io.ReadFull(rc, buf)
		if n > 0 || first {
			var hdr *rayhostv1.ObjectHeader
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
			return toConnect(rerr)
		}
	}
}

func (p *peerAPI) AddLocation(ctx context.Context, req *connect.Request[rayhostv1.AddLocationRequest]) (*connect.Response[rayhostv1.AddLocationResponse], error) {
	id, err := ids.ParseObjectID(req.Msg.GetId())
	if err != nil {
		return nil, invalid("%v", err)
	}
	// Holders are handed to other hosts to pull from: only members.
	if !p.h.isMember(req.Msg.GetHolder()) {
		return nil, invalid("holder %q: %v", req.Msg.GetHolder(), errNotMember)
	}
	p.h.objs.addHolder(id, req.Msg.GetHolder())
	return connect.NewResponse(&rayhostv1.AddLocationResponse{}), nil
}

func (p *peerAPI) FetchModule(ctx context.Context, req *connect.Request[rayhostv1.FetchModuleRequest], stream *connect.ServerStream[rayhostv1.FetchModuleResponse]) error {
	d := req.Msg.GetDigest()
	if !digestRE.MatchString(d) {
		return invalid("digest %q", d)
	}
	f, err := os.Open(p.h.mods.pathOf(d))
	if err != nil {
		return toConnect(fmt.Errorf("%w: %s", ErrModuleNotFound, d))
	}
	defer f.Close()
	buf := make([]byte, getStreamChunk)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if err := stream.Send(&rayhostv1.FetchModuleResponse{Chunk: buf[:n]}); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return toConnect(err)
		}
	}
}

func (p *peerAPI) WarmModule(ctx context.Context, req *connect.Request[rayhostv1.WarmModuleRequest]) (*connect.Response[rayhostv1.WarmModuleResponse], error) {
	if _, err := p.h.ensureModule(ctx, req.Msg.GetDigest(), req.Msg.GetFrom()); err != nil {
		return nil, toConnect(err)
	}
	// Describing it compiles it into the cache and loads it into every
	// worker.
	if _, err := p.h.lookupModule(ctx, req.Msg.GetDigest()); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&rayhostv1.WarmModuleResponse{}), nil
}

// warmPeers has every alive peer fetch and compile a module registered
// here, waiting up to a bound: a cluster where it is ready everywhere runs
// its first tasks without a cold start on each host.
func (h *Host) warmPeers(ctx context.Context, digest string) {
	if h.cluster == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, pc := range h.cluster.Alive() {
		wg.Go(func() {
			if _, err := pc.API.WarmModule(ctx, connect.NewRequest(&rayhostv1.WarmModuleRequest{Digest: digest, From: h.addr})); err != nil {
				h.log.Info("a peer did not warm a module", "digest", digest, "err", err)
			}
		})
	}
	wg.Wait()
}

// ensureModule returns the module with digest, fetching its bytes from the
// host at from if this host lacks them. Tasks run for other hosts need only
// the file: the owner checked the call against the module's functions.
func (h *Host) ensureModule(ctx context.Context, digest, from string) (*module, error) {
	if !digestRE.MatchString(digest) {
		return nil, fmt.Errorf("%w: digest %q", ErrInvalidModule, digest)
	}
	h.mods.mu.Lock()
	mod := h.mods.byDigest[digest]
	h.mods.mu.Unlock()
	if mod != nil {
		return mod, nil
	}
	path := h.mods.pathOf(digest)
	if _, err := os.Stat(path); err == nil {
		return &module{digest: digest}, nil
	}
	pc, err := h.reach(from)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: fetching it from %v", ErrModuleNotFound, digest, err)
	}
	ctx, cancel := mergeCancel(ctx, pc.ctx)
	defer cancel()
	stream, err := pc.api.FetchModule(ctx, connect.NewRequest(&rayhostv1.FetchModuleRequest{Digest: digest}))
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	tmp, err := os.CreateTemp(h.mods.dir, ".fetch-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	sum := sha256.New()
	size := 0
	for stream.Receive() {
		chunk := stream.Msg().GetChunk()
		if size += len(chunk); size > h.cfg.MaxModuleBytes {
			tmp.Close()
			return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalidModule, h.cfg.MaxModuleBytes)
		}
		sum.Write(chunk)
		if _, err := tmp.Write(chunk); err != nil {
			tmp.Close()
			return nil, err
		}
	}
	if err := errors.Join(stream.Err(), tmp.Close()); err != nil {
		return nil, err
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != digest {
		return nil, fmt.Errorf("%w: fetched bytes hash to %s", ErrInvalidModule, got)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, err
	}
	return &module{digest: digest}, nil
}

// --- objects on other hosts (remoteObjects) ---

// hostObjects lets objects reach other hosts through the host.
type hostObjects struct{ h *Host }

func (r hostObjects) fetch(ctx context.Context, id ids.ObjectID, holders []string, owner string) error {
	return r.h.fetch(ctx, id, holders, owner)
}

// resolve runs in the background, tracked so Close waits for it before it
// closes the object table (an untracked one raced Close's close of it).
func (r hostObjects) resolve(id ids.ObjectID, owner string) {
	r.h.goTracked(func() { r.h.resolve(id, owner) })
}

// fetch brings id's bytes here from a host that holds them. If none can
// give them, the owner rebuilds the object: this host, by lineage, or the
// owner elsewhere, asked again with the holders that failed.
func (h *Host) fetch(ctx context.Context, id ids.ObjectID, holders []string, owner string) error {
	failed, err := h.pullFromAny(ctx, id, holders, owner)
	if err == nil || ctx.Err() != nil {
		return err
	}
	if owner == "" || owner == h.addr {
		return h.reconstruct(id)
	}
	// Ask the owner where it is now; it rebuilds it if every copy is gone.
	res, err := h.locate(ctx, id, owner, failed, -1)
	if err != nil {
		return err
	}
	v, err := valueOfLocate(res)
	if err != nil {
		return fmt.Errorf("%w: %s: its owner says: %v", ErrObjectLost, id, err)
	}
	h.objs.refill(id, v)
	return nil
}

// pullFromAny pulls id from the first of holders that gives it, and tells
// the owner this host now holds it too. It returns the holders that have
// no copy (they answered so, or are gone), which are forgotten; a holder
// that failed otherwise (a slow link, say) is tried again another time.
func (h *Host) pullFromAny(ctx context.Context, id ids.ObjectID, holders []string, owner string) (failed []string, err error) {
	if h.cluster == nil {
		return nil, fmt.Errorf("%w: %s is held by other hosts and this one is in no cluster", ErrObjectLost, id)
	}
	var last error
	for _, x := range holders {
		if x == h.addr {
			continue
		}
		if h.peerDown(x) {
			failed = append(failed, x)
			continue
		}
		if last = h.pull(ctx, id, x); last == nil {
			if owner != "" && owner != h.addr {
				go h.tellOwner(id, owner)
			}
			return nil, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// A holder that says it has no copy, or is gone, is forgotten; one
		// that failed otherwise (a reset connection) may still have it.
		if connect.CodeOf(last) == connect.CodeNotFound || h.peerDown(x) {
			failed = append(failed, x)
		}
	}
	h.objs.dropHolders(id, failed)
	if last == nil {
		last = errors.New("no host holding it is alive")
	}
	return failed, fmt.Errorf("%w: %s: %v", ErrObjectLost, id, last)
}

// pull copies id from the host at from into the local store, chunk by
// chunk: a large object is never whole in this host's memory.
func (h *Host) pull(ctx context.Context, id ids.ObjectID, from string) error {
	pc, err := h.reach(from)
	if err != nil {
		return err
	}
	ctx, cancel := mergeCancel(ctx, pc.ctx)
	defer cancel()
	stream, err := pc.api.Pull(ctx, connect.NewRequest(&rayhostv1.PullRequest{Id: id.String()}))
	if err != nil {
		return err
	}
	defer stream.Close()
	if !stream.Receive() {
		if err := stream.Err(); err != nil {
			return err
		}
		return io.ErrUnexpectedEOF
	}
	hdr := stream.Msg().GetHeader()
	codec, ok := codecNamed(hdr.GetCodec())
	if hdr == nil || !ok {
		return fmt.Errorf("pulling %s from %s: bad header", id, from)
	}
	w, err := h.st.Create(ctx, id, store.Meta{Size: hdr.GetSize(), Codec: store.Codec(codec), Owner: from, Task: id.Task(), Created: time.Now()})
	if err != nil {
		return err
	}
	defer w.Abort()
	for first := true; first || stream.Receive(); first = false {
		if _, err := w.Write(stream.Msg().GetChunk()); err != nil {
			return err
		}
	}
	if err := stream.Err(); err != nil {
		return err
	}
	return w.Commit(ctx)
}

// mergeCancel returns a context that ends when either a or b does.
func mergeCancel(a, b context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(a)
	stop := context.AfterFunc(b, cancel)
	return ctx, func() { stop(); cancel() }
}

// tellOwner records at the owner that this host holds a copy of id.
func (h *Host) tellOwner(id ids.ObjectID, owner string) {
	pc, err := h.reach(owner)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(pc.ctx, 5*time.Second)
	defer cancel()
	if _, err := pc.api.AddLocation(ctx, connect.NewRequest(&rayhostv1.AddLocationRequest{Id: id.String(), Holder: h.addr})); err != nil {
		h.log.Debug("telling an owner about a copy", "object_id", id, "owner", owner, "err", err)
	}
}

// unknownObjectGrace is how long an owner may not know an object before
// it counts as not found.
const unknownObjectGrace = 10 * time.Second

// locate asks owner about id, waiting up to timeoutMs (-1: no limit) for
// it to be ready. A gone owner gives ErrOwnerDied.
func (h *Host) locate(ctx context.Context, id ids.ObjectID, owner string, failed []string, timeoutMs int64) (*rayhostv1.LocateResponse, error) {
	var unknownSince time.Time
	for attempt := 0; ; attempt++ {
		pc, err := h.awaitMember(ctx, owner)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w: %s owns %s: %v", ErrOwnerDied, owner, id, err)
		}
		cctx, cancel := mergeCancel(ctx, pc.ctx)
		res, err := pc.api.Locate(cctx, connect.NewRequest(&rayhostv1.LocateRequest{Id: id.String(), FailedHolders: failed, TimeoutMs: timeoutMs}))
		cancel()
		if err == nil {
			return res.Msg, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ce *connect.Error
		if errors.As(err, &ce) && ce.Code() == connect.CodeNotFound {
			// A ref can reach here before its owner registered it (a
			// guest's submit is relayed to the owner while the guest goes
			// on): unknown counts as not yet known for a while.
			if unknownSince.IsZero() {
				unknownSince = time.Now()
			}
			if time.Since(unknownSince) > unknownObjectGrace {
				return nil, fmt.Errorf("%w: %s (its owner %s does not know it)", ErrObjectNotFound, id, owner)
			}
		}
		if !sleepCtx(ctx, min(time.Duration(attempt+1)*100*time.Millisecond, time.Second)) {
			return nil, ctx.Err()
		}
	}
}

// resolve learns from owner what a borrowed object is once it is ready,
// and seals it here: its value if small, else where it is held.
func (h *Host) resolve(id ids.ObjectID, owner string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-h.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		res, err := h.locate(ctx, id, owner, nil, 20_000)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			kind := abi.ErrorOwnerDied
			if errors.Is(err, ErrObjectNotFound) {
				kind = abi.ErrorBadRequest
			}
			_ = h.objs.seal(ctx, id, (&abi.TaskError{Kind: kind, TaskID: id.Task().String(), Message: err.Error()}).Encode())
			return
		}
		if !res.GetReady() {
			continue
		}
		v, err := valueOfLocate(res)
		if err != nil {
			h.log.Warn("an owner described an object badly", "object_id", id, "owner", owner, "err", err)
			_ = h.objs.seal(ctx, id, (&abi.TaskError{Kind: abi.ErrorHost, TaskID: id.Task().String(), Message: err.Error()}).Encode())
			return
		}
		if err := h.objs.seal(ctx, id, v); err != nil {
			h.log.Error("sealing a borrowed object", "object_id", id, "err", err)
		}
		return
	}
}

// valueOfLocate turns an owner's answer into a value to seal: the bytes,
// or (codecHeld) where they are.
func valueOfLocate(res *rayhostv1.LocateResponse) (abi.Value, error) {
	codec, ok := codecNamed(res.GetCodec())
	if !ok {
		return abi.Value{}, fmt.Errorf("codec %q", res.GetCodec())
	}
	if res.GetInline() {
		return abi.Value{Codec: codec, Data: res.GetData()}, nil
	}
	if len(res.GetHolders()) == 0 || codec == abi.CodecError {
		return abi.Value{}, errors.New("no holders")
	}
	return heldAsValue(heldValue{Codec: codec, Size: res.GetSize(), Holders: slices.Clone(res.GetHolders())}), nil
}
