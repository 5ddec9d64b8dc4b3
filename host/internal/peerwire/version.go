// Package peerwire is the one definition of what hosts of a cluster send
// each other beyond the Connect messages of proto/rayhost/v1/peer.proto:
// the peer protocol version every call carries, and the payloads of the
// frames that only the PeerService Execute stream carries (ipc.TypePeerExec
// and the others; docs/CLUSTER.md, "Peer protocol"), encoded with package
// abi's encoding.
package peerwire

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
)

// Version is the peer protocol version this host speaks. Hosts of one
// cluster must speak the same: a change to a peer message, a frame of the
// Execute stream or their payloads makes the next version.
const Version = 6 // 6: objects pulled as raw bytes (PullBytesPath); 5: values of codec cbor (abi.CodecCBOR); 4: one Execute stream per pair of hosts, its frames batched (peermux); 3: values of codec ints (abi.CodecInts)

// VersionHeader carries the caller's version on every call a host makes to
// another, and the answering host's version on its answer.
const VersionHeader = "Rayhost-Peer-Version"

// ErrVersion: the other host speaks another peer protocol version.
var ErrVersion = errors.New("peerwire: peer protocol version mismatch")

// versionText is how a header value reads in an error ("none" if absent).
func versionText(v string) string {
	if v == "" {
		return "none"
	}
	if _, err := strconv.ParseUint(v, 10, 32); err == nil {
		return v
	}
	return strconv.Quote(v)
}

// CheckVersion returns nil if hdr (a call's or an answer's headers)
// carries this host's version, else an ErrVersion naming both.
func CheckVersion(hdr http.Header, them string) error {
	got := hdr.Get(VersionHeader)
	if got == strconv.Itoa(Version) {
		return nil
	}
	return fmt.Errorf("%w: this host speaks version %d, %s speaks %s", ErrVersion, Version, them, versionText(got))
}

// ClientInterceptor adds VersionHeader to every call (unary and streaming)
// of the clients a host calls its peers with.
func ClientInterceptor() connect.Interceptor { return clientInterceptor{} }

type clientInterceptor struct{}

func (clientInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set(VersionHeader, strconv.Itoa(Version))
		return next(ctx, req)
	}
}

func (clientInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set(VersionHeader, strconv.Itoa(Version))
		return conn
	}
}

func (clientInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// ServerInterceptor checks the version of calls to the PeerService: one
// without this host's version is refused with CodeFailedPrecondition (an
// ErrVersion naming both versions) before its handler runs. A call that
// carries a version (a peer's, to any service) gets this host's version in
// the answer's headers, so the caller can tell which it speaks.
func ServerInterceptor() connect.Interceptor { return serverInterceptor{} }

type serverInterceptor struct{}

func toPeerService(procedure string) bool {
	return strings.HasPrefix(procedure, "/"+rayhostv1connect.PeerServiceName+"/")
}

// refusal is the error a call with another version gets.
func refusal(hdr http.Header) error {
	err := connect.NewError(connect.CodeFailedPrecondition, CheckVersion(hdr, "the caller"))
	err.Meta().Set(VersionHeader, strconv.Itoa(Version))
	return err
}

func (serverInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if toPeerService(req.Spec().Procedure) && CheckVersion(req.Header(), "") != nil {
			return nil, refusal(req.Header())
		}
		res, err := next(ctx, req)
		if req.Header().Get(VersionHeader) != "" {
			if res != nil {
				res.Header().Set(VersionHeader, strconv.Itoa(Version))
			}
			var ce *connect.Error
			if errors.As(err, &ce) {
				ce.Meta().Set(VersionHeader, strconv.Itoa(Version))
			}
		}
		return res, err
	}
}

func (serverInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (serverInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if conn.RequestHeader().Get(VersionHeader) != "" {
			conn.ResponseHeader().Set(VersionHeader, strconv.Itoa(Version))
		}
		if toPeerService(conn.Spec().Procedure) && CheckVersion(conn.RequestHeader(), "") != nil {
			return refusal(conn.RequestHeader())
		}
		return next(ctx, conn)
	}
}
