package guard

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"

	"connectrpc.com/connect"
)

// PeerHeader carries a host's credential on its calls to another member.
// The credential is derived from the cluster secret and bound to the
// address called (see PeerCredential): a member that receives one cannot
// replay it to another host.
const PeerHeader = "Rayhost-Peer"

// PeerProofHeader carries a host's answer to a member's call: proof that
// the host answering holds the cluster secret too (see PeerProof). A host
// uses a member (places work on it, pulls from it, sends it modules) only
// once it has given this proof.
const PeerProofHeader = "Rayhost-Peer-Proof"

// PeerKey derives the key of peer credentials from the cluster secret: the
// gossip key when there is one (every member proved it holds it by joining);
// else, on a loopback cluster without a key, the API token, which hosts of
// a cluster share. With neither there is no secret: the label alone keys
// the credential, which then only tells a host from a client that does not
// try (such a host's API is open to anyone on the machine anyway).
func PeerKey(gossipKey []byte, token string) []byte {
	var secret []byte
	switch {
	case len(gossipKey) > 0:
		secret = gossipKey
	case token != "":
		secret = []byte(token)
	}
	m := hmac.New(sha256.New, []byte("rayhost peer credential v1"))
	m.Write(secret)
	return m.Sum(nil)
}

// PeerCredential is the credential a member sends on calls to the host
// whose API is at addr.
func PeerCredential(key []byte, addr string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("call to " + addr))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// PeerProof is what the host whose API is at addr answers members with.
func PeerProof(key []byte, addr string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("answer from " + addr))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// PeerInterceptor adds a member's credential (PeerCredential) for the host
// at one address to every call to it.
type PeerInterceptor string

func (p PeerInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set(PeerHeader, string(p))
		return next(ctx, req)
	}
}

func (p PeerInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set(PeerHeader, string(p))
		return conn
	}
}

func (p PeerInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
