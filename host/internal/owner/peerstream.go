package owner

import (
	"context"
	"fmt"
	"sync"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/host/internal/peermux"
	"github.com/rayhost/rayhost/internal/ipc"
)

// One PeerService.Execute stream per pair of hosts and direction carries
// every attempt the owner runs on the executor, each a link of a
// peermux.Mux, their frames batched (peer protocol 4).

// remoteRole is tasks this host runs on other hosts, and calling members.
type remoteRole struct {
	o *Owner

	mu    sync.Mutex
	muxes map[string]*peerMux // by host ID
}

// peerMux is the owner's stream to one member.
type peerMux struct {
	m      *peermux.Mux
	api    rayhostv1connect.PeerServiceClient
	ctx    context.Context // ends when the member leaves or fails
	cancel context.CancelFunc
}

// open opens a link to node for an attempt whose first frame is spec: on
// the stream to node, started if there is none or it ended.
func (pr *remoteRole) open(l *remoteLink, first []byte) (*peermux.Link, error) {
	h := pr.o
	pr.mu.Lock()
	pm := pr.muxes[l.node]
	if pm == nil || pm.api != l.api || pm.ctx.Err() != nil || pm.m.Err() != nil {
		ctx, cancel := context.WithCancel(l.peerCtx)
		stream := l.api.Execute(ctx)
		pm = &peerMux{m: peermux.New(clientStream{stream}, peermux.Config{}), api: l.api, ctx: ctx, cancel: cancel}
		if pr.muxes == nil {
			pr.muxes = map[string]*peerMux{}
		}
		pr.muxes[l.node] = pm
		// The stream's context ending does not end a stream whose request
		// body is still open: the mux stops sending first, then closes it.
		var closeReq sync.Once
		closeSend := func() {
			pm.m.Close(ctx.Err())
			<-pm.m.Stopped()
			closeReq.Do(func() { _ = stream.CloseRequest() })
		}
		stop := context.AfterFunc(ctx, closeSend)
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			err := pm.m.Run()
			stop()
			cancel()
			closeReq.Do(func() { _ = stream.CloseRequest() })
			_ = stream.CloseResponse()
			pr.mu.Lock()
			if pr.muxes[l.node] == pm {
				delete(pr.muxes, l.node)
			}
			pr.mu.Unlock()
			h.log.Debug("the stream to a peer ended", "host", l.node, "err", err)
		}()
	}
	pr.mu.Unlock()
	return pm.m.Open(ipc.TypePeerExec, first)
}

// clientStream is the owner's end of an Execute stream.
type clientStream struct {
	s *connect.BidiStreamForClient[rayhostv1.ExecuteRequest, rayhostv1.ExecuteResponse]
}

func (c clientStream) Send(b []byte) error {
	return c.s.Send(&rayhostv1.ExecuteRequest{Type: uint32(ipc.TypePeerBatch), Payload: b})
}

func (c clientStream) Receive() ([]byte, error) {
	res, err := c.s.Receive()
	if err != nil {
		return nil, err
	}
	if t := ipc.Type(res.GetType()); t != ipc.TypePeerBatch {
		return nil, fmt.Errorf("%w: a %s frame on the Execute stream", peermux.ErrProtocol, t)
	}
	return res.GetPayload(), nil
}

// serverStream is the executor's end of an Execute stream.
type serverStream struct {
	s *connect.BidiStream[rayhostv1.ExecuteRequest, rayhostv1.ExecuteResponse]
}

func (c serverStream) Send(b []byte) error {
	return c.s.Send(&rayhostv1.ExecuteResponse{Type: uint32(ipc.TypePeerBatch), Payload: b})
}

func (c serverStream) Receive() ([]byte, error) {
	m, err := c.s.Receive()
	if err != nil {
		return nil, err
	}
	if t := ipc.Type(m.GetType()); t != ipc.TypePeerBatch {
		return nil, fmt.Errorf("%w: a %s frame on the Execute stream", peermux.ErrProtocol, t)
	}
	return m.GetPayload(), nil
}
