package host_test

import (
	"bytes"
	"io"
	"net/http"
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
	t.Run("the raw pull route", func(t *testing.T) { rawPull(t, hosts, c, mod, key) })
	stillServes(t, c, mod)
}

// rawPull: the raw route objects are pulled on (peerwire.PullBytesPath)
// serves a member in this version the object's bytes, with its codec and
// size; it refuses a stranger, another host's credential, another version,
// another method and a bad ID before reading anything, and an object not
// held there with 404.
func rawPull(t *testing.T, hosts []*host.Host, c *client.Client, mod string, key []byte) {
	const size = 3 << 20
	ctx := ctxFor(t, hangGuard)
	refs, err := c.SubmitCall(ctx, client.Call{Module: mod, Function: "make_bytes", Args: []any{size},
		Scheduling: client.Scheduling{NodeID: hosts[1].ID()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Wait(ctx, refs, 1, -1); err != nil {
		t.Fatal(err)
	}
	holder := hosts[1].Addr()
	cfgWith := &host.Config{Token: trustToken, Cluster: &host.ClusterConfig{Gossip: gossip.Config{EncryptKey: key}}}
	this := strconv.Itoa(peerwire.Version)
	get := func(method, cred, version, id string) (*http.Response, []byte) {
		req, err := http.NewRequestWithContext(ctx, method, "http://"+holder+peerwire.PullBytesPath+"?id="+id, nil)
		if err != nil {
			t.Fatal(err)
		}
		if cred != "" {
			req.Header.Set(host.PeerHeader, cred)
		}
		if version != "" {
			req.Header.Set(peerwire.VersionHeader, version)
		}
		req.Header.Set("Authorization", "Bearer "+trustToken) // a user's token is no member's credential
		res, err := client.NewHTTPClient(nil).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res, b
	}
	cred := host.PeerCredential(cfgWith, holder)
	res, b := get(http.MethodGet, cred, this, refs[0].ID)
	if res.StatusCode != http.StatusOK || res.Header.Get(peerwire.CodecHeader) != "raw" || res.ContentLength != size || len(b) != size {
		t.Fatalf("a member's pull: %s, codec %q, length %d, %d bytes", res.Status, res.Header.Get(peerwire.CodecHeader), res.ContentLength, len(b))
	}
	for i := range b {
		if b[i] != byte(i*7) {
			t.Fatalf("byte %d is %d", i, b[i])
		}
	}
	refused := []struct {
		name, method, cred, version, id string
		status                          int
	}{
		{"no credential (a user's token)", http.MethodGet, "", this, refs[0].ID, http.StatusUnauthorized},
		{"the credential for another host", http.MethodGet, host.PeerCredential(cfgWith, hosts[0].Addr()), this, refs[0].ID, http.StatusUnauthorized},
		{"another version", http.MethodGet, cred, strconv.Itoa(peerwire.Version - 1), refs[0].ID, http.StatusPreconditionFailed},
		{"no version", http.MethodGet, cred, "", refs[0].ID, http.StatusPreconditionFailed},
		{"POST", http.MethodPost, cred, this, refs[0].ID, http.StatusMethodNotAllowed},
		{"a bad ID", http.MethodGet, cred, this, "../../etc/passwd", http.StatusBadRequest},
		{"an object not held there", http.MethodGet, cred, this, strings.Repeat("ab", 20), http.StatusNotFound},
	}
	for _, r := range refused {
		res, b := get(r.method, r.cred, r.version, r.id)
		if res.StatusCode != r.status || len(b) >= size {
			t.Errorf("%s: %s (%d bytes), want %d", r.name, res.Status, len(b), r.status)
		}
		t.Logf("%s: %s %s", r.name, res.Status, strings.TrimSpace(string(b)))
	}
	// Pulled through the other host, to the client, the bytes are the same.
	var buf bytes.Buffer
	if _, err := c.GetStream(ctx, refs[0], &buf); err != nil || !bytes.Equal(buf.Bytes(), b) {
		t.Fatalf("GetStream through the other host: %d bytes, %v", buf.Len(), err)
	}
}
