package abi

import (
	"reflect"
	"testing"

	"github.com/rayhost/rayhost/internal/ids"
)

func TestNestedRefs(t *testing.T) {
	a, b := ids.TaskID{1}.Return(0), ids.TaskID{2}.Put(0)
	ref := func(id ids.ObjectID, owner string) string {
		return `{"object_id":"` + id.String() + `","owner":"` + owner + `"}`
	}
	tests := []struct {
		name string
		v    Value
		want []Ref
	}{
		{"no refs", Value{Codec: CodecJSON, Data: []byte(`{"x":[1,2,3]}`)}, nil},
		{"raw bytes that look like a ref", Value{Codec: CodecRaw, Data: []byte(ref(a, "h"))}, nil},
		{"one ref", Value{Codec: CodecJSON, Data: []byte(ref(a, "h:1"))}, []Ref{{ID: a, Owner: "h:1"}}},
		{"refs in a list, once per occurrence", Value{Codec: CodecJSON, Data: []byte(`[` + ref(a, "h") + `,` + ref(b, "") + `,` + ref(a, "h") + `]`)},
			[]Ref{{ID: a, Owner: "h"}, {ID: b}, {ID: a, Owner: "h"}}},
		{"a bad ID is no ref", Value{Codec: CodecJSON, Data: []byte(`{"object_id":"zz"}`)}, nil},
		{"malformed JSON has none", Value{Codec: CodecJSON, Data: []byte(`{"object_id":`)}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := NestedRefs(tc.v)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("NestedRefs = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReleaseRequest(t *testing.T) {
	in := ReleaseRequest{IDs: []ids.ObjectID{ids.TaskID{1}.Return(0), ids.TaskID{2}.Put(3)}, Counts: []uint32{1, 7}}
	var out ReleaseRequest
	if err := out.Decode(in.Encode(nil)); err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip: %+v, %v", out, err)
	}
	for name, b := range map[string][]byte{
		"a zero count":   (&ReleaseRequest{IDs: in.IDs[:1], Counts: []uint32{0}}).Encode(nil),
		"a short ID":     {1, 1, 2, 3},
		"a huge count":   {0xff, 0xff, 0xff, 0xff, 0x0f},
		"trailing bytes": append(in.Encode(nil), 0),
	} {
		if err := new(ReleaseRequest).Decode(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	if err := CheckRequest(OpRelease, in.Encode(nil)); err != nil {
		t.Fatalf("CheckRequest: %v", err)
	}
}
