package owner

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/host/internal/objdir"
	"github.com/rayhost/rayhost/host/internal/refcount"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// refsOf renders an object's references as "kind by×count" strings.
func refsOf(o *rayhostv1.MemoryObject) []string {
	var out []string
	for _, r := range o.GetReferences() {
		out = append(out, fmt.Sprintf("%s %s×%d", r.GetKind(), r.GetBy(), r.GetCount()))
	}
	return out
}

// TestMemoryReport: every kind of reference is named with who holds it,
// objects are listed largest first (pending last, then by ID), the limit
// bounds the listing but not the summary.
func TestMemoryReport(t *testing.T) {
	task, other, rebuilt := ids.TaskID{1}, ids.TaskID{2}, ids.TaskID{3}
	a, b, c, d := ids.TaskID{0xa}.Put(0), ids.TaskID{0xb}.Return(0), ids.TaskID{0xc}.Put(0), ids.TaskID{0xd}.Put(0)
	entries := []memoryEntry{
		{refs: refcount.Refs{ID: a, Holders: map[refcount.Holder]int32{testHolder: 1, refcount.Holder("task:" + task.String() + "/0"): 2},
			In: []ids.ObjectID{c}, Submitted: 1, Lineage: 1, Sealed: true}, size: 100, state: memReady, where: "memory"},
		{refs: refcount.Refs{ID: b, Owner: "10.0.0.2:6380", Holders: map[refcount.Holder]int32{"actor:x": 1}}, state: memPending},
		{refs: refcount.Refs{ID: c, Borrowers: []string{"10.0.0.3:6380"}, Pinned: true, Sealed: true}, size: 500, state: memReady,
			where: "hosts", holders: []string{"10.0.0.3:6380"}},
		{refs: refcount.Refs{ID: d, Holders: map[refcount.Holder]int32{"session:s": 1}, Sealed: true}, size: 100, state: memReady, where: "store"},
	}
	args := map[ids.ObjectID][]refcount.TaskArg{a: {{Task: other}, {Task: rebuilt, Lineage: true}}}
	res := memoryReport(entries, args, 3, objdir.Stats{MemBytes: 4096}, refcount.Stats{Freed: 7})

	var order []string
	for _, o := range res.GetObjects() {
		order = append(order, o.GetObjectId())
	}
	if want := []string{c.String(), a.String(), d.String()}; !reflect.DeepEqual(order, want) {
		t.Fatalf("listed %v, want the largest first, ties by ID, up to the limit: %v", order, want)
	}
	wantRefs := [][]string{
		{"borrowed 10.0.0.3:6380×1", "pinned ×1"},
		{"local_ref " + testHolder + "×1", "local_ref task:" + task.String() + "/1×2", "task_arg " + other.String() + "×1",
			"lineage " + rebuilt.String() + "×1", "in_object " + c.String() + "×1"},
		{"local_ref session:s×1"},
	}
	for i, o := range res.GetObjects() {
		if got := refsOf(o); !reflect.DeepEqual(got, wantRefs[i]) {
			t.Errorf("%s: references %q, want %q", o.GetObjectId(), got, wantRefs[i])
		}
	}
	if o := res.GetObjects()[0]; o.GetLocation() != "hosts" || !reflect.DeepEqual(o.GetHolders(), []string{"10.0.0.3:6380"}) {
		t.Errorf("an object held by another host: %v", o)
	}
	want := &rayhostv1.MemorySummary{Objects: 4, Borrowed: 1, Bytes: 700, MemoryBytes: 4096, Freed: 7, Listed: 3,
		ByKind: map[string]uint64{"local_ref": 3, "task_arg": 1, "lineage": 1, "in_object": 1, "borrowed": 1, "pinned": 1}}
	if s := res.GetSummary(); s.String() != want.String() {
		t.Errorf("summary %v, want %v", s, want)
	}
	if all := memoryReport(entries, args, 10, objdir.Stats{}, refcount.Stats{}); len(all.GetObjects()) != 4 || all.GetObjects()[3].GetObjectId() != b.String() {
		t.Errorf("with room for all, the pending one comes last: %v", all.GetObjects())
	}
}

// TestPlaceEntry: where an object's bytes are, and its state, from what
// the directory holds.
func TestPlaceEntry(t *testing.T) {
	own := refcount.Refs{Sealed: true}
	borrowed := refcount.Refs{Owner: "10.0.0.2:6380"}
	gone := errors.New("not here")
	for _, tc := range []struct {
		name         string
		refs         refcount.Refs
		hd           objdir.Holding
		err          error
		state, where string
	}{
		{"in memory", own, objdir.Holding{InMemory: true, Local: true, Size: 3}, nil, memReady, "memory"},
		{"in the store", own, objdir.Holding{Local: true, Size: 3}, nil, memReady, "store"},
		{"on other hosts", own, objdir.Holding{Holders: []string{"h2"}, Size: 3}, nil, memReady, "hosts"},
		{"a failure", own, objdir.Holding{Value: abi.Value{Codec: abi.CodecError}, InMemory: true, Local: true}, nil, memFailed, "memory"},
		{"nowhere", own, objdir.Holding{}, nil, memMissing, ""},
		{"lost", own, objdir.Holding{}, gone, memMissing, ""},
		{"borrowed, not resolved yet", borrowed, objdir.Holding{}, gone, memPending, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := memoryEntry{refs: tc.refs}
			placeEntry(&e, tc.hd, tc.err)
			if e.state != tc.state || e.where != tc.where {
				t.Fatalf("state %q where %q, want %q %q", e.state, e.where, tc.state, tc.where)
			}
		})
	}
}

// TestMemoryOfAHost: a host lists what its workload keeps alive — a
// client's put, a value that contains a ref, an argument of a running
// task, a running task's ref — with sizes and places.
func TestMemoryOfAHost(t *testing.T) {
	f := newFixture(t, nil)
	ctx := hangCtx(t)
	big := ids.NewTaskID().Put(0)
	if err := f.api.Put(ctx, testCaller, big, abi.Value{Codec: abi.CodecRaw, Data: make([]byte, 200<<10)}); err != nil {
		t.Fatal(err)
	}
	boxTask, box := f.submit(t, "put_bytes", nil, 1000)
	f.value(t, box[0])
	ms := ids.NewTaskID().Put(0)
	if err := f.api.Put(ctx, testCaller, ms, abi.Value{Codec: abi.CodecJSON, Data: fmt.Appendf(nil, "%d", tenMinutes)}); err != nil {
		t.Fatal(err)
	}
	sleepTask, slept := f.submit(t, "sleep", nil, ref{ms})
	f.waitState(t, sleepTask, stateRunning)
	nested := []map[string]string{{"object_id": slept[0].String(), "owner": f.o.addr}}
	getter, _ := f.submit(t, "get_nested", nil, nested)
	f.waitState(t, getter, stateRunning)

	var res *rayhostv1.MemoryResponse
	byID := map[string]*rayhostv1.MemoryObject{}
	// A Get of box returns once its value is sealed in the directory; the
	// counter learns what it contains, and the attempt's end, just after:
	// wait for both (the put held only by box).
	waitUntil(t, "put_bytes's attempt to let go of its put, and box to hold it", func() bool {
		var err error
		if res, err = f.api.Memory(ctx, 100); err != nil {
			t.Fatal(err)
		}
		clear(byID)
		for _, o := range res.GetObjects() {
			byID[o.GetObjectId()] = o
		}
		o := byID[boxTask.Put(0).String()]
		return o != nil && reflect.DeepEqual(refsOf(o), []string{"in_object " + box[0].String() + "×1"})
	})
	attempt := "task:" + getter.String() + "/1"
	for _, tc := range []struct {
		id           ids.ObjectID
		size         int64
		state, where string
		refs         []string
	}{
		{big, 200 << 10, memReady, "store", []string{"local_ref " + testHolder + "×1"}},
		{boxTask.Put(0), 1000, memReady, "memory", []string{"in_object " + box[0].String() + "×1"}},
		{box[0], -1, memReady, "memory", []string{"local_ref " + testHolder + "×1"}},
		{ms, 6, memReady, "memory", []string{"local_ref " + testHolder + "×1", "task_arg " + sleepTask.String() + "×1"}},
		{slept[0], 0, memPending, "", []string{"local_ref " + testHolder + "×1", "local_ref " + attempt + "×1", "task_arg " + getter.String() + "×1"}},
	} {
		o := byID[tc.id.String()]
		if o == nil {
			t.Errorf("%s is not listed", tc.id)
			continue
		}
		if tc.size >= 0 && o.GetSizeBytes() != tc.size || o.GetState() != tc.state || o.GetLocation() != tc.where ||
			!reflect.DeepEqual(refsOf(o), tc.refs) || o.GetOwner() != "" {
			t.Errorf("%s: %v\nwant size %d, %s in %q, references %q", tc.id, o, tc.size, tc.state, tc.where, tc.refs)
		}
	}
	s := res.GetSummary()
	if s.GetObjects() != 6 || s.GetListed() != 6 || s.GetByKind()["local_ref"] != 5 || s.GetByKind()["task_arg"] != 2 ||
		s.GetByKind()["in_object"] != 1 || s.GetBytes() < 200<<10+1000 || s.GetMemoryBytes() <= 0 {
		t.Errorf("summary %v", s)
	}
	if res.GetAddress() != f.o.addr || res.GetObjects()[0].GetObjectId() != big.String() {
		t.Errorf("address %s, first %s: want %s and the largest object", res.GetAddress(), res.GetObjects()[0].GetObjectId(), f.o.addr)
	}
	if one, _ := f.api.Memory(ctx, 1); len(one.GetObjects()) != 1 || one.GetSummary().GetObjects() != 6 {
		t.Errorf("limit 1: %d listed of %d", len(one.GetObjects()), one.GetSummary().GetObjects())
	}
	if err := f.api.Cancel(slept[0], true, true); err != nil {
		t.Fatal(err)
	}
}
