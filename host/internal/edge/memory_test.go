package edge

import (
	"bytes"
	"cmp"
	"context"
	"slices"
	"testing"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// Memory lists the fake's objects, largest first, each held by "api".
func (f *fakeHost) Memory(ctx context.Context, limit int) (*rayhostv1.MemoryResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	objs := make([]ids.ObjectID, 0, len(f.objs))
	sum := &rayhostv1.MemorySummary{Objects: uint64(len(f.objs)), ByKind: map[string]uint64{"local_ref": uint64(len(f.objs))}}
	for id, v := range f.objs {
		objs = append(objs, id)
		sum.Bytes += int64(len(v.Data))
	}
	slices.SortFunc(objs, func(a, b ids.ObjectID) int {
		return cmp.Or(cmp.Compare(len(f.objs[b].Data), len(f.objs[a].Data)), bytes.Compare(a[:], b[:]))
	})
	res := &rayhostv1.MemoryResponse{HostId: "h", Address: f.addr, Summary: sum}
	for _, id := range objs[:min(limit, len(objs))] {
		res.Objects = append(res.Objects, &rayhostv1.MemoryObject{ObjectId: id.String(), SizeBytes: int64(len(f.objs[id].Data)),
			State: "ready", Location: "memory", References: []*rayhostv1.ObjectReference{{Kind: "local_ref", By: "api", Count: 1}}})
	}
	sum.Listed = uint64(len(res.Objects))
	return res, nil
}

// failingMemory is a host whose Memory fails with err.
type failingMemory struct {
	*fakeHost
	err error
}

func (f failingMemory) Memory(context.Context, int) (*rayhostv1.MemoryResponse, error) {
	return nil, f.err
}

// TestMemory: the limit defaults to DefaultMemoryLimit, bounds the listing
// (not the summary), and may not pass MaxMemoryLimit; the host's errors
// keep their codes.
func TestMemory(t *testing.T) {
	f := newFakeHost()
	c, _, _ := serve(t, f, nil)
	ctx := ctxFor(t)
	for n := range 3 {
		f.set(ids.NewTaskID().Put(0), abi.Value{Codec: abi.CodecRaw, Data: make([]byte, 10*(n+1))})
	}
	for _, tc := range []struct {
		name   string
		limit  uint32
		listed int
	}{{"default", 0, 3}, {"bounded", 2, 2}, {"most", MaxMemoryLimit, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := c.Memory(ctx, connect.NewRequest(&rayhostv1.MemoryRequest{Limit: tc.limit}))
			if err != nil {
				t.Fatal(err)
			}
			m := res.Msg
			if len(m.GetObjects()) != tc.listed || m.GetSummary().GetListed() != uint64(tc.listed) || m.GetSummary().GetObjects() != 3 {
				t.Fatalf("limit %d: %d listed (summary: %v), want %d of 3", tc.limit, len(m.GetObjects()), m.GetSummary(), tc.listed)
			}
			if m.GetObjects()[0].GetSizeBytes() != 30 || m.GetAddress() != f.addr {
				t.Fatalf("first listed: %v at %s, want the 30-byte object of %s", m.GetObjects()[0], m.GetAddress(), f.addr)
			}
		})
	}
	if _, err := c.Memory(ctx, connect.NewRequest(&rayhostv1.MemoryRequest{Limit: MaxMemoryLimit + 1})); codeOfCall(err) != connect.CodeInvalidArgument {
		t.Errorf("a limit past the most: %v, want invalid_argument", err)
	}

	e, err := New(failingMemory{newFakeHost(), errClosed}, Config{MaxMessageBytes: 2 << 20, MaxDrivers: 1, MaxDriversPerClient: 1,
		Done: make(chan struct{}), ErrClosed: errClosed})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Memory(ctx, connect.NewRequest(&rayhostv1.MemoryRequest{})); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Errorf("a host that is closing: %v, want unavailable", err)
	}
}
