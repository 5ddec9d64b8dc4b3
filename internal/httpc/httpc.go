// Package httpc is the HTTP side of calling a host's Connect API, shared by
// package client and by hosts calling each other: an HTTP/2 client (over
// TLS, or h2c, which streaming calls need) and an interceptor that sends a
// bearer token.
package httpc

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"
)

const (
	maxFrame     = 1 << 20
	streamWindow = 8 << 20
)

// New returns an HTTP client that speaks HTTP/2: over TLS with cfg, else
// without TLS (h2c).
func New(cfg *tls.Config) *http.Client {
	protocols := new(http.Protocols)
	if cfg != nil {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	return &http.Client{Transport: &http.Transport{
		Protocols:       protocols,
		DialContext:     (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSClientConfig: cfg,
		// A connection to a host that vanished (a partition) is noticed by
		// pings instead of hanging calls until TCP gives up. Frames of up to
		// 1 MiB (the default is 16 KiB: a 1 MiB chunk of an object was 64
		// frames and as many writes) and 8 MiB in flight per stream.
		HTTP2: &http.HTTP2Config{SendPingTimeout: 5 * time.Second, PingTimeout: 5 * time.Second,
			MaxReadFrameSize: maxFrame, MaxReceiveBufferPerStream: streamWindow},
	}}
}

// Bearer returns an interceptor that adds "Authorization: Bearer <token>"
// to unary and streaming calls.
func Bearer(token string) connect.Interceptor { return header("Bearer " + token) }

// header sets the Authorization header to itself.
type header string

func (t header) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", string(t))
		return next(ctx, req)
	}
}

func (t header) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", string(t))
		return conn
	}
}

func (t header) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
