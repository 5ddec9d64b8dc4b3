package host

import (
	"github.com/rayhost/rayhost/host/internal/guard"
)

// Errors of the API's front door (see package guard).
var (
	// ErrUnauthenticated: a call without the API token (or, to the peer
	// service, without a member's credential).
	ErrUnauthenticated = guard.ErrUnauthenticated
	// ErrRateLimited: a client called RegisterModule faster than
	// Config.RegisterRate allows.
	ErrRateLimited = guard.ErrRateLimited
)

// The peer credential's headers (see package guard).
const (
	peerHeader      = guard.PeerHeader
	peerProofHeader = guard.PeerProofHeader
)

// peerKey derives the key of peer credentials from the cluster secret (see
// guard.PeerKey).
func peerKey(cfg *Config) []byte {
	var gossipKey []byte
	if cfg.Cluster != nil {
		gossipKey = cfg.Cluster.Gossip.EncryptKey
	}
	return guard.PeerKey(gossipKey, cfg.Token)
}

func peerCredential(key []byte, addr string) string { return guard.PeerCredential(key, addr) }

func peerProof(key []byte, addr string) string { return guard.PeerProof(key, addr) }

// newGuard returns the API's front door for the host whose API members
// call at self.
func newGuard(cfg *Config, self string) (*guard.Guard, error) {
	return guard.New(guard.Config{Token: cfg.Token, PeerKey: peerKey(cfg), Self: self,
		RegisterRate: cfg.RegisterRate, RegisterBurst: cfg.RegisterBurst,
		BodyReadTimeout: cfg.BodyReadTimeout, BodyRead: cfg.bodyRead})
}
