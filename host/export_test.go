package host

import (
	"sync/atomic"

	"github.com/rayhost/rayhost/host/internal/owner"
)

// CountBodyBytes makes a host started with cfg count the bytes it reads
// from request bodies into n.
func CountBodyBytes(cfg *Config, n *atomic.Int64) { cfg.bodyRead = n }

// PeerCredential is the credential a member of a cluster configured like
// cfg sends to the host whose API is at addr.
func PeerCredential(cfg *Config, addr string) string { return peerCredential(peerKey(cfg), addr) }

// PeerHeader is the header a member's credential travels in.
const PeerHeader = peerHeader

// RefCounts is what h's reference counter and client sessions count:
// objects counted, live sessions, anonymous holds pending.
func RefCounts(h *Host) (objects, sessions, anonymous int) {
	rs, ss := owner.RefStats(h.own)
	return rs.Objects, ss.Sessions, ss.Anonymous
}
