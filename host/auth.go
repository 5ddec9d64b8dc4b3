package host

import (
	"context"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"

	"connectrpc.com/connect"
)

// ErrUnauthenticated: a call without the cluster token.
var ErrUnauthenticated = errors.New("host: missing or wrong token")

// authInterceptor requires "Authorization: Bearer <token>" on every call the
// host serves, unary and streaming alike.
type authInterceptor struct{ want []byte }

func newAuthInterceptor(token string) *authInterceptor {
	return &authInterceptor{want: []byte("Bearer " + token)}
}

func (a *authInterceptor) check(h http.Header) error {
	got := []byte(h.Get("Authorization"))
	if subtle.ConstantTimeCompare(got, a.want) != 1 {
		return connect.NewError(connect.CodeUnauthenticated, ErrUnauthenticated)
	}
	return nil
}

func (a *authInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if err := a.check(req.Header()); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (a *authInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (a *authInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := a.check(conn.RequestHeader()); err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// exposed reports whether addr listens beyond loopback.
func exposed(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return !ok || !tcp.IP.IsLoopback()
}
