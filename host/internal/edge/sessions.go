// This file holds the edge's side of client sessions: who calls (Caller),
// the interceptor every TaskService call passes first, and Release,
// KeepAlive and EndSession. The sessions themselves are the host's
// (host/internal/sessions, kept by the owner).

package edge

import (
	"context"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/host/internal/guard"
	"github.com/rayhost/rayhost/host/internal/sessions"
)

// Caller is who makes a call: the principal the guard let in and the
// session it names. The refs the call makes are held by Holder, which the
// host's BeginCall sets: the session's holder, or the principal's
// anonymous one.
type Caller struct {
	Principal string
	// Session is the ID of the Rayhost-Session header; zero without one.
	Session sessions.ID
	Holder  string
}

// InSession reports whether c names a session.
func (c Caller) InSession() bool { return !c.Session.IsZero() }

type callerKey struct{}

// callerOf is the caller of the call whose context is ctx, as the
// interceptor found it; a call that did not pass it (a handler called
// directly) is an anonymous caller.
func callerOf(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}

// callerFrom reads who calls from a call's headers and peer: the
// principal the guard set (a call that came another way, in tests, is its
// client address) and the session it names.
func callerFrom(ctx context.Context, h interface{ Values(string) []string }, peer connect.Peer) (Caller, error) {
	p, ok := guard.PrincipalOf(ctx)
	if !ok {
		p = "client@" + clientOf(peer.Addr)
	}
	c := Caller{Principal: p}
	vals := h.Values(sessions.Header)
	switch len(vals) {
	case 0:
		return c, nil
	case 1:
	default:
		return c, Invalid("%s: sent %d times, want one session ID", sessions.Header, len(vals))
	}
	id, err := sessions.ParseID(vals[0])
	if err != nil {
		return c, Invalid("%s header: %v", sessions.Header, err)
	}
	c.Session = id
	return c, nil
}

// callerInterceptor begins every call with the host (BeginCall: a call in
// a session refreshes it and keeps it alive while it runs) and gives the
// handlers its Caller. EndSession does not begin a call: it would make the
// session it ends.
type callerInterceptor struct{ e *Edge }

func (ci callerInterceptor) begin(ctx context.Context, proc string, h interface{ Values(string) []string }, peer connect.Peer) (context.Context, func(), error) {
	c, err := callerFrom(ctx, h, peer)
	if err != nil {
		return nil, nil, err
	}
	end := func() {}
	if proc != rayhostv1connect.TaskServiceEndSessionProcedure {
		if c, end, err = ci.e.h.BeginCall(c); err != nil {
			return nil, nil, ToConnect(err)
		}
	}
	return context.WithValue(ctx, callerKey{}, c), end, nil
}

func (ci callerInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		ctx, end, err := ci.begin(ctx, req.Spec().Procedure, req.Header(), req.Peer())
		if err != nil {
			return nil, err
		}
		defer end()
		return next(ctx, req)
	}
}

func (ci callerInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (ci callerInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, end, err := ci.begin(ctx, conn.Spec().Procedure, conn.RequestHeader(), conn.Peer())
		if err != nil {
			return err
		}
		defer end()
		return next(ctx, conn)
	}
}

// Release lets go of the caller's holds on refs.
func (e *Edge) Release(ctx context.Context, req *connect.Request[rayhostv1.ReleaseRequest]) (*connect.Response[rayhostv1.ReleaseResponse], error) {
	refs, err := parseRefs(req.Msg.GetRefs())
	if err != nil {
		return nil, err
	}
	e.h.Release(callerOf(ctx), refs)
	return connect.NewResponse(&rayhostv1.ReleaseResponse{}), nil
}

// KeepAlive keeps the caller's session alive: the interceptor did, this
// says for how long.
func (e *Edge) KeepAlive(ctx context.Context, req *connect.Request[rayhostv1.KeepAliveRequest]) (*connect.Response[rayhostv1.KeepAliveResponse], error) {
	if !callerOf(ctx).InSession() {
		return nil, Invalid("KeepAlive needs a session: send its ID in the %s header", sessions.Header)
	}
	return connect.NewResponse(&rayhostv1.KeepAliveResponse{TtlMs: e.cfg.SessionTTL.Milliseconds()}), nil
}

// EndSession ends the caller's session.
func (e *Edge) EndSession(ctx context.Context, req *connect.Request[rayhostv1.EndSessionRequest]) (*connect.Response[rayhostv1.EndSessionResponse], error) {
	c := callerOf(ctx)
	if !c.InSession() {
		return nil, Invalid("EndSession needs a session: send its ID in the %s header", sessions.Header)
	}
	return connect.NewResponse(&rayhostv1.EndSessionResponse{Ended: e.h.EndSession(c)}), nil
}
