package abi

import (
	"reflect"
	"testing"

	"github.com/rayhost/rayhost/internal/ids"
)

func TestNestedActors(t *testing.T) {
	a := ids.TaskID{1}
	h := `{"actor_id":"` + a.String() + `","owner":"h:1"}`
	tests := []struct {
		name string
		v    Value
		want []Ref
	}{
		{"no handles", Value{Codec: CodecJSON, Data: []byte(`{"x":1}`)}, nil},
		{"raw bytes", Value{Codec: CodecRaw, Data: []byte(h)}, nil},
		{"one handle", Value{Codec: CodecJSON, Data: []byte(h)}, []Ref{{ID: ActorRef(a), Owner: "h:1"}}},
		{"twice in a list", Value{Codec: CodecJSON, Data: []byte(`[` + h + `,` + h + `]`)},
			[]Ref{{ID: ActorRef(a), Owner: "h:1"}, {ID: ActorRef(a), Owner: "h:1"}}},
		{"a bad ID is no handle", Value{Codec: CodecJSON, Data: []byte(`{"actor_id":"zz"}`)}, nil},
		{"an object ref is no handle", Value{Codec: CodecJSON, Data: []byte(`{"object_id":"` + a.Return(0).String() + `"}`)}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := NestedActors(tc.v); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("NestedActors = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSubmitActorLifetimeFields(t *testing.T) {
	tests := []struct {
		name string
		in   SubmitRequest
	}{
		{"detached", SubmitRequest{Task: ids.TaskID{1}, Function: "C", Kind: KindActorCreate, Detached: true, Args: []Arg{}}},
		{"max concurrency", SubmitRequest{Task: ids.TaskID{1}, Function: "C", Kind: KindActorCreate, MaxConcurrency: 8, Args: []Arg{}}},
		{"both, with scheduling", SubmitRequest{Task: ids.TaskID{1}, Function: "C", Kind: KindActorCreate, Detached: true, MaxConcurrency: 2,
			Scheduling: Scheduling{Spread: true}, Args: []Arg{}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out SubmitRequest
			if err := out.Decode(tc.in.Encode(nil)); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(out, tc.in) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", out, tc.in)
			}
		})
	}
	// A concurrency of 1 (the default) or beyond the bound is refused.
	for _, n := range []uint64{1, MaxConcurrency + 1} {
		b := (&SubmitRequest{Task: ids.TaskID{1}, Function: "C", Kind: KindActorCreate}).Encode(nil)
		b = (Scheduling{}).appendTo(b)
		e := Encoder{B: b}
		e.Uvarint(n)
		var out SubmitRequest
		if err := out.Decode(e.B); err == nil {
			t.Fatalf("max concurrency %d decoded", n)
		}
	}
}

func (s Scheduling) appendTo(b []byte) []byte {
	e := Encoder{B: b}
	s.encode(&e)
	return e.B
}
