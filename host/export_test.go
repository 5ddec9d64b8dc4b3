package host

import "sync/atomic"

// CountBodyBytes makes a host started with cfg count the bytes it reads
// from request bodies into n.
func CountBodyBytes(cfg *Config, n *atomic.Int64) { cfg.bodyRead = n }

// PeerCredential is the credential a member of a cluster configured like
// cfg sends to the host whose API is at addr.
func PeerCredential(cfg *Config, addr string) string { return peerCredential(peerKey(cfg), addr) }

// PeerHeader is the header a member's credential travels in.
const PeerHeader = peerHeader
