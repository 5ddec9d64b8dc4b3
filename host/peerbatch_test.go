package host_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/rayhost/rayhost/client"
	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/gossip"
	"github.com/rayhost/rayhost/guest-sdk/ray"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/host/internal/peerwire"
	"github.com/rayhost/rayhost/internal/ipc"
	"github.com/rayhost/rayhost/internal/testutil"
)

// TestPeerBatch: many tasks submitted together and pinned to the peer
// travel over its one Execute stream, their frames batched; each task gets
// its own result, and the one that fails fails alone.
func TestPeerBatch(t *testing.T) {
	hosts := testutil.StartCluster(t, 2, nil)
	c := client.New(hosts[0].Addr())
	mod := testutil.Register(t, c, guestPkg)
	ctx := ctxFor(t, testutil.HangGuard)
	peer := client.Scheduling{NodeID: hosts[1].ID()}
	const n, bad = 300, 137
	calls := make([]client.Call, n)
	for i := range calls {
		calls[i] = client.Call{Module: mod, Function: "add", Args: []any{i, 1}, Scheduling: peer}
	}
	calls[bad] = client.Call{Module: mod, Function: "fail", Args: []any{"one of the batch"}, Scheduling: peer}
	refs, err := c.SubmitBatch(ctx, calls)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range refs {
		var got int
		err := c.Get(ctx, r[0], &got)
		if i == bad {
			var te *ray.TaskError
			if !errors.As(err, &te) || !strings.Contains(err.Error(), "one of the batch") {
				t.Fatalf("the failing task: %v, want its error", err)
			}
			continue
		}
		if err != nil || got != i+1 {
			t.Fatalf("task %d = %d, %v; want %d", i, got, err, i+1)
		}
	}
	evs, _, err := c.ListTasks(ctx, "finished")
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.State == "finished" && ev.Host != hosts[1].ID() {
			t.Fatalf("task %s finished on %q, want the peer %s", ev.TaskID, ev.Host, hosts[1].ID())
		}
	}
}

// TestPeerBatchHostDies: the peer running a batch of tasks dies; the
// tasks running or queued there are retried on the host that is left
// (soft affinity), each with its result.
func TestPeerBatchHostDies(t *testing.T) {
	hosts := testutil.StartCluster(t, 2, nil)
	c := client.New(hosts[0].Addr())
	mod := testutil.Register(t, c, guestPkg)
	ctx := ctxFor(t, testutil.HangGuard)
	calls := make([]client.Call, 20)
	for i := range calls {
		calls[i] = client.Call{Module: mod, Function: "sleeper", Args: []any{200 + i},
			Scheduling: client.Scheduling{NodeID: hosts[1].ID(), Soft: true}}
	}
	refs, err := c.SubmitBatch(ctx, calls)
	if err != nil {
		t.Fatal(err)
	}
	// Once one runs on the peer, the peer goes.
	eventually(t, testutil.HangGuard, func() bool {
		evs, _, _ := c.ListTasks(ctx, "running")
		for _, ev := range evs {
			if ev.Host == hosts[1].ID() {
				return true
			}
		}
		return false
	}, "a task running on the peer")
	if err := hosts[1].Close(); err != nil {
		t.Fatal(err)
	}
	for i, r := range refs {
		var got int
		if err := c.Get(ctx, r[0], &got); err != nil || got != 200+i {
			t.Fatalf("task %d = %d, %v; want %d", i, got, err, 200+i)
		}
	}
	evs, _, _ := c.ListTasks(ctx, "")
	retried := 0
	for _, ev := range evs {
		if ev.State == "retried" {
			retried++
		}
	}
	if retried == 0 {
		t.Fatal("no task was retried after the peer died")
	}
}

// TestPeerBatchHostile: a member whose Execute stream breaks the peer
// protocol (a frame that is no batch, a batch that does not decode, a link
// that does not start with an exec) has its stream refused as invalid,
// saying why; an exec that does not decode ends its link alone, with the
// reason. The host goes on serving.
func TestPeerBatchHostile(t *testing.T) {
	key, _ := gossip.ParseKey(gossip.GenerateKey())
	hosts := trustCluster(t, 2, key)
	c := client.New(hosts[0].Addr(), client.WithToken(trustToken))
	mod := testutil.Register(t, c, guestPkg)
	addr := hosts[0].Addr()
	cred := host.PeerCredential(&host.Config{Token: trustToken, Cluster: &host.ClusterConfig{Gossip: gossip.Config{EncryptKey: key}}}, addr)
	pc := rayhostv1connect.NewPeerServiceClient(client.NewHTTPClient(nil), "http://"+addr)
	open := func(t *testing.T) *connect.BidiStreamForClient[rayhostv1.ExecuteRequest, rayhostv1.ExecuteResponse] {
		stream := pc.Execute(ctxFor(t, hangGuard))
		stream.RequestHeader().Set(host.PeerHeader, cred)
		stream.RequestHeader().Set(peerwire.VersionHeader, strconv.Itoa(peerwire.Version))
		t.Cleanup(func() { _ = stream.CloseRequest(); _ = stream.CloseResponse() })
		return stream
	}
	sub := func(link uint64, typ ipc.Type, p []byte) []byte {
		return peerwire.AppendSub(nil, peerwire.Sub{Link: link, Type: typ, Payload: p})
	}
	for _, tc := range []struct {
		name    string
		typ     ipc.Type
		payload []byte
		want    string
	}{
		{"not a batch", ipc.TypePeerExec, []byte("a frame of version 3"), "a peer_exec frame on the Execute stream"},
		{"empty batch", ipc.TypePeerBatch, nil, "batch: empty"},
		{"truncated batch", ipc.TypePeerBatch, sub(1, ipc.TypePeerExec, []byte("spec"))[:5], "batch: frame 1"},
		{"first frame not an exec", ipc.TypePeerBatch, sub(1, ipc.TypeReply, nil), "link 1 starts with a reply frame, not an exec"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream := open(t)
			if err := stream.Send(&rayhostv1.ExecuteRequest{Type: uint32(tc.typ), Payload: tc.payload}); err != nil {
				t.Fatal(err)
			}
			_, err := stream.Receive()
			if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Receive: %v, want invalid argument with %q", err, tc.want)
			}
		})
	}
	t.Run("bad exec", func(t *testing.T) {
		stream := open(t)
		if err := stream.Send(&rayhostv1.ExecuteRequest{Type: uint32(ipc.TypePeerBatch), Payload: sub(1, ipc.TypePeerExec, []byte("not a spec"))}); err != nil {
			t.Fatal(err)
		}
		res, err := stream.Receive()
		if err != nil {
			t.Fatal(err)
		}
		subs, err := peerwire.DecodeBatch(res.GetPayload())
		if err != nil || len(subs) != 1 || subs[0].Link != 1 || subs[0].Type != ipc.TypePeerEnd || !strings.Contains(string(subs[0].Payload), "exec:") {
			t.Fatalf("answer to a bad exec: %+v, %v; want link 1 ended with the reason", subs, err)
		}
	})
	stillServes(t, c, mod)
	if seen := runAcross(t, c, mod); len(seen) != 2 {
		t.Fatalf("tasks ran on %v after the hostile streams, want both hosts", seen)
	}
}
