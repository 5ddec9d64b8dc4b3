package host_test

import (
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/rayhost/rayhost/client"
	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/gossip"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/host/internal/peerwire"
	"github.com/rayhost/rayhost/internal/testutil"
)

// TestPeerProtocolVersion: hosts of this peer protocol version work
// together (tasks run on both); a member's call in another version, or in
// none, is refused with FailedPrecondition naming both versions, before
// the handler runs, and the host goes on serving.
func TestPeerProtocolVersion(t *testing.T) {
	key, _ := gossip.ParseKey(gossip.GenerateKey())
	hosts := trustCluster(t, 2, key)
	c := client.New(hosts[0].Addr(), client.WithToken(trustToken))
	mod := testutil.Register(t, c, guestPkg)
	if seen := runAcross(t, c, mod); len(seen) != 2 {
		t.Fatalf("tasks ran on %v, want both hosts", seen)
	}

	addr := hosts[0].Addr()
	cred := host.PeerCredential(&host.Config{Token: trustToken, Cluster: &host.ClusterConfig{Gossip: gossip.Config{EncryptKey: key}}}, addr)
	pc := rayhostv1connect.NewPeerServiceClient(client.NewHTTPClient(nil), "http://"+addr)
	locate := func(version string) error {
		req := connect.NewRequest(&rayhostv1.LocateRequest{Id: strings.Repeat("ab", 20)})
		req.Header().Set(host.PeerHeader, cred)
		if version != "" {
			req.Header().Set(peerwire.VersionHeader, version)
		}
		_, err := pc.Locate(ctxFor(t, hangGuard), req)
		return err
	}
	this := strconv.Itoa(peerwire.Version)
	if err := locate(this); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("a member's Locate of an unknown object in this version: %v, want not found", err)
	}
	for _, v := range []string{strconv.Itoa(peerwire.Version + 1), ""} {
		err := locate(v)
		want := "this host speaks version " + this + ", the caller speaks "
		if v == "" {
			want += "none"
		} else {
			want += v
		}
		if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), want) {
			t.Fatalf("Locate in version %q: %v, want failed precondition with %q", v, err, want)
		}
	}
	// The Execute stream is refused too, before any frame is read.
	ctx := ctxFor(t, hangGuard)
	stream := pc.Execute(ctx)
	stream.RequestHeader().Set(host.PeerHeader, cred)
	stream.RequestHeader().Set(peerwire.VersionHeader, strconv.Itoa(peerwire.Version+1))
	_ = stream.Send(&rayhostv1.ExecuteRequest{Type: 100, Payload: []byte("not an exec")})
	if _, err := stream.Receive(); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("Execute in another version: %v", err)
	}
	_ = stream.CloseRequest()
	_ = stream.CloseResponse()
	stillServes(t, c, mod)
}
