package host

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"connectrpc.com/connect"

	"github.com/rayhost/rayhost/gossip"
	"github.com/rayhost/rayhost/host/internal/cluster"
	"github.com/rayhost/rayhost/host/internal/guard"
)

// ClusterConfig makes a host a member of a cluster: it gossips with the
// others (Serf), places tasks on them and moves objects between them.
type ClusterConfig struct {
	// Gossip configures membership. New fills in NodeName (the host's ID),
	// APIAddr (its advertised address) and Resources (its totals).
	Gossip gossip.Config
	// Seeds are gossip addresses of members to join; none starts a new
	// cluster.
	Seeds []string
	// JoinTimeout bounds how long New tries the seeds before it gives up.
	JoinTimeout time.Duration
	// LoadInterval is how often the host reads its peers' free resources.
	LoadInterval time.Duration
	// NewMembership creates the membership; nil uses Serf (gossip.New).
	NewMembership func(gossip.Config) (gossip.Membership, error)
}

// DefaultClusterConfig returns a cluster configuration with Serf's LAN
// timings that joins seeds.
func DefaultClusterConfig(seeds ...string) *ClusterConfig {
	return &ClusterConfig{Gossip: gossip.DefaultConfig(), Seeds: seeds, JoinTimeout: time.Minute, LoadInterval: 200 * time.Millisecond}
}

// startCluster joins the cluster once the API listens (its address goes
// into the gossip tags).
func (h *Host) startCluster() error {
	cc := h.cfg.Cluster
	gc := cc.Gossip
	gc.NodeName = h.cfg.ID
	gc.APIAddr = h.addr
	gc.Resources = map[string]float64{"CPU": h.cfg.NumCPUs, "GPU": h.cfg.NumGPUs}
	maps.Copy(gc.Resources, h.cfg.Resources)
	if gc.Logger == nil {
		gc.Logger = h.log
	}
	newMembership := cc.NewMembership
	if newMembership == nil {
		newMembership = func(c gossip.Config) (gossip.Membership, error) { return gossip.New(c) }
	}
	m, err := newMembership(gc)
	if err != nil {
		return fmt.Errorf("host: gossip: %w", err)
	}
	var tlsCfg *tls.Config
	if h.cfg.TLSCertFile != "" {
		// Hosts of one cluster share a certificate (or a CA that signed
		// theirs): trust it besides the system's roots.
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if pem, err := os.ReadFile(h.cfg.TLSCertFile); err == nil {
			pool.AppendCertsFromPEM(pem)
		}
		tlsCfg = &tls.Config{RootCAs: pool}
	}
	// Members authenticate to each other with a credential derived from the
	// cluster secret and bound to the address called (auth.go), never with
	// the users' API token.
	key := peerKey(&h.cfg)
	c, err := cluster.New(cluster.Config{
		ID: h.cfg.ID, Addr: h.addr, Membership: m, Placement: h.own.Placement(),
		Credential: func(addr string) http.Header { return http.Header{guard.PeerHeader: {peerCredential(key, addr)}} },
		Proven: func(addr string, answer http.Header) bool {
			return subtle.ConstantTimeCompare([]byte(answer.Get(peerProofHeader)), []byte(peerProof(key, addr))) == 1
		},
		Keyed: len(cc.Gossip.EncryptKey) > 0,
		TLS:   tlsCfg,
		// Hosts talk over a LAN and move objects that are often
		// incompressible: gzip (Connect's default) made pulls CPU-bound at
		// ~130 MB/s, so peers do not offer it.
		ClientOptions: []connect.ClientOption{connect.WithReadMaxBytes(h.cfg.MaxMessageBytes), connect.WithSendMaxBytes(h.cfg.MaxMessageBytes),
			connect.WithAcceptCompression("gzip", nil, nil)},
		LoadInterval: cc.LoadInterval,
		PeersFile:    filepath.Join(h.cfg.DataDir, "cluster-peers"),
		Logger:       h.log,
	})
	if err != nil {
		_ = m.Close()
		return fmt.Errorf("host: %w", err)
	}
	h.cluster = c
	h.own.AttachCluster(c)
	if err := c.Start(h.own.Serving(), cc.Seeds, cc.JoinTimeout); err != nil {
		return fmt.Errorf("host: %w", err)
	}
	return nil
}

// hostPlacement applies what the cluster learns about members to the
// host's scheduler.
