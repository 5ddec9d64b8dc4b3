package owner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/host/internal/modules"
	"github.com/rayhost/rayhost/host/internal/objdir"
	"github.com/rayhost/rayhost/host/internal/peerwire"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/kinds"
)

// peerAPI implements the PeerService hosts call on each other.
type peerAPI struct{ h *Owner }

// PeerService returns the handlers of the PeerService other hosts call.
func (h *Owner) PeerService() rayhostv1connect.PeerServiceHandler { return &peerAPI{h} }

func (p *peerAPI) Execute(ctx context.Context, stream *connect.BidiStream[rayhostv1.ExecuteRequest, rayhostv1.ExecuteResponse]) error {
	return p.h.fgn.execute(ctx, stream)
}

func (p *peerAPI) Locate(ctx context.Context, req *connect.Request[rayhostv1.LocateRequest]) (*connect.Response[rayhostv1.LocateResponse], error) {
	id, err := ids.ParseObjectID(req.Msg.GetId())
	if err != nil {
		return nil, invalid("%v", err)
	}
	timeout := time.Duration(req.Msg.GetTimeoutMs()) * time.Millisecond // 0: answer at once
	if req.Msg.GetTimeoutMs() < 0 {
		timeout = -1
	}
	loc, err := p.h.objs.Locate(ctx, id, req.Msg.GetFailedHolders(), timeout)
	if err != nil {
		return nil, toConnect(err)
	}
	if loc.Ready && p.h.rem.isMember(req.Msg.GetFrom()) {
		p.h.objs.AddCopy(id, req.Msg.GetFrom()) // it may keep the value: told when it is freed
	}
	return connect.NewResponse(&rayhostv1.LocateResponse{Ready: loc.Ready, Codec: loc.Codec, Inline: loc.Inline, Data: loc.Data, Size: loc.Size, Holders: loc.Holders}), nil
}

// PullBytes returns the handler of the peer protocol's raw pull
// (peerwire.PullBytesPath): an object's bytes as they are, no message per
// chunk. The guard lets only members reach it.
func (h *Owner) PullBytes() http.Handler { return http.HandlerFunc((&peerAPI{h}).pullBytes) }

func (p *peerAPI) pullBytes(w http.ResponseWriter, r *http.Request) {
	if !peerwire.CheckRawVersion(w, r) {
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "pull with GET", http.StatusMethodNotAllowed)
		return
	}
	id, err := ids.ParseObjectID(r.URL.Query().Get("id"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	started := false
	var werr error // the last error of a write: the puller went away
	err = p.h.objs.Serve(r.Context(), id, func(hdr *objdir.Header, chunk []byte) error {
		if !started {
			started = true
			w.Header().Set(peerwire.CodecHeader, hdr.Codec.String())
			w.Header().Set("Content-Length", strconv.FormatInt(hdr.Size, 10))
			w.Header().Set("Content-Type", "application/octet-stream")
			w.WriteHeader(http.StatusOK)
		}
		_, werr = w.Write(chunk)
		return werr
	})
	switch {
	case err == nil || started:
		// Past the header, a failure ends the body short of its
		// Content-Length: the puller sees too few bytes.
		if err != nil && err != werr {
			p.h.log.Warn("serving a pull", "object_id", id, "err", err)
		}
	case errors.Is(err, objdir.ErrNotFound) || errors.Is(err, objdir.ErrFreed):
		if k := kinds.Name(err); k != "" {
			w.Header().Set(kinds.Header, k)
		}
		http.Error(w, err.Error(), http.StatusNotFound)
	default:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

func (p *peerAPI) AddLocation(ctx context.Context, req *connect.Request[rayhostv1.AddLocationRequest]) (*connect.Response[rayhostv1.AddLocationResponse], error) {
	id, err := ids.ParseObjectID(req.Msg.GetId())
	if err != nil {
		return nil, invalid("%v", err)
	}
	// Holders are handed to other hosts to pull from: only members.
	if !p.h.rem.isMember(req.Msg.GetHolder()) {
		return nil, invalid("holder %q: %v", req.Msg.GetHolder(), errNotMember)
	}
	p.h.objs.AddHolder(id, req.Msg.GetHolder())
	p.h.objs.AddCopy(id, req.Msg.GetHolder())
	return connect.NewResponse(&rayhostv1.AddLocationResponse{}), nil
}

func (p *peerAPI) FetchModule(ctx context.Context, req *connect.Request[rayhostv1.FetchModuleRequest], stream *connect.ServerStream[rayhostv1.FetchModuleResponse]) error {
	d := req.Msg.GetDigest()
	if !modules.ValidDigest(d) {
		return invalid("digest %q", d)
	}
	f, err := os.Open(p.h.mods.Path(d))
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
	if _, err := p.h.fgn.ensureModule(ctx, req.Msg.GetDigest(), req.Msg.GetFrom()); err != nil {
		return nil, toConnect(err)
	}
	// Describing it compiles it into the cache and loads it into every
	// worker.
	if _, err := p.h.adm.lookupModule(ctx, req.Msg.GetDigest()); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&rayhostv1.WarmModuleResponse{}), nil
}

// warmPeers has every alive peer fetch and compile a module registered
// here, waiting up to a bound: a cluster where it is ready everywhere runs
// its first tasks without a cold start on each host.
func (fx *executor) warmPeers(ctx context.Context, digest string) {
	h := fx.o
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
func (fx *executor) ensureModule(ctx context.Context, digest, from string) (*module, error) {
	h := fx.o
	if !modules.ValidDigest(digest) {
		return nil, fmt.Errorf("%w: digest %q", ErrInvalidModule, digest)
	}
	if mod := h.mods.Known(digest); mod != nil {
		return mod, nil
	}
	path := h.mods.Path(digest)
	if _, err := os.Stat(path); err == nil {
		return &module{Digest: digest}, nil
	}
	pc, err := h.rem.reach(from)
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
	tmp, err := os.CreateTemp(h.mods.Dir(), ".fetch-*")
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
	return &module{Digest: digest}, nil
}
