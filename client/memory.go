package client

import (
	"context"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
)

// Memory is what one host keeps alive: the objects it counts references
// to, largest first, and totals over all of them (docs/MEMORY.md).
type Memory struct {
	HostID, Address string
	Objects         []MemoryObject
	Summary         MemorySummary
}

// MemoryObject is one object a host counts references to.
type MemoryObject struct {
	ID string
	// Owner is the owner's address; empty for an object the host owns.
	Owner string `json:",omitempty"`
	Size  int64
	// State is pending, ready, failed (its value is its task's error) or
	// missing (counted, but its bytes are nowhere known).
	State string
	// Where is memory, store or hosts (then Holders lists them); empty
	// unless ready.
	Where   string   `json:",omitempty"`
	Holders []string `json:",omitempty"`
	// References say why it is alive.
	References []ObjectReference
}

// ObjectReference is one reason an object is alive: Kind local_ref (By a
// holder: session:PRINCIPAL#N, anon:PRINCIPAL, task:ID/ATTEMPT,
// actor:ID), task_arg or lineage (By a task), in_object (By an object),
// borrowed (By a host) or pinned.
type ObjectReference struct {
	Kind  string
	By    string `json:",omitempty"`
	Count int
}

// MemorySummary counts all the objects a host counts, listed or not.
type MemorySummary struct {
	Objects, Borrowed, Listed int
	// Bytes is the sum of their sizes; MemoryBytes what the host's object
	// directory holds in memory.
	Bytes, MemoryBytes int64
	// Unpersisted is the bytes of values the host has not written to its
	// store yet (written behind their seal): what a crash of the host
	// would lose. 0 once every write is done.
	Unpersisted int64
	// Freed counts the objects freed since the host started.
	Freed uint64
	// ByKind counts objects per reference kind.
	ByKind map[string]int
}

// Memory asks the host c talks to what it keeps alive, listing up to
// limit objects (0: the host's default, 1000).
func (c *Client) Memory(ctx context.Context, limit int) (*Memory, error) {
	res, err := c.svc.Memory(ctx, connect.NewRequest(&rayhostv1.MemoryRequest{Limit: uint32(max(limit, 0))}))
	if err != nil {
		return nil, fromConnect(err)
	}
	m := res.Msg
	s := m.GetSummary()
	out := &Memory{HostID: m.GetHostId(), Address: m.GetAddress(), Objects: []MemoryObject{}, Summary: MemorySummary{
		Objects: int(s.GetObjects()), Borrowed: int(s.GetBorrowed()), Listed: int(s.GetListed()),
		Bytes: s.GetBytes(), MemoryBytes: s.GetMemoryBytes(), Unpersisted: s.GetUnpersistedBytes(), Freed: s.GetFreed(), ByKind: map[string]int{},
	}}
	for k, n := range s.GetByKind() {
		out.Summary.ByKind[k] = int(n)
	}
	for _, o := range m.GetObjects() {
		mo := MemoryObject{ID: o.GetObjectId(), Owner: o.GetOwner(), Size: o.GetSizeBytes(), State: o.GetState(),
			Where: o.GetLocation(), Holders: o.GetHolders(), References: []ObjectReference{}}
		for _, r := range o.GetReferences() {
			mo.References = append(mo.References, ObjectReference{Kind: r.GetKind(), By: r.GetBy(), Count: int(r.GetCount())})
		}
		out.Objects = append(out.Objects, mo)
	}
	return out, nil
}
