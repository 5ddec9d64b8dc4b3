package ray

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
)

type cborInner struct {
	N  uint16  `json:"n"`
	F  float32 `json:"f"`
	On bool    `json:"on,omitempty"`
}

type cborShape struct {
	Name    string               `json:"name"`
	Skip    string               `json:"-"`
	Empty   []string             `json:"empty,omitempty"`
	Inner   cborInner            `json:"inner,omitempty"` // a struct is never "empty" to encoding/json
	Ptr     *cborInner           `json:"ptr"`
	Bytes   []byte               `json:"bytes"`
	ID      [4]byte              `json:"id"`
	ByInt   map[int64]string     `json:"by_int"`
	ByUint  map[uint8][]float64  `json:"by_uint"`
	Nested  [][]map[string]int16 `json:"nested"`
	private int
	cborEmbedded
}

type cborEmbedded struct {
	Promoted string
}

type cborList struct {
	Value int
	Next  *cborList
}

// shapeCase checks that v travels in codec want, comes back equal, and
// that its JSON (what clients get) is the JSON encoding/json writes, which
// also decodes back into T.
func shapeCase[T any](t *testing.T, name string, v T, want abi.Codec) {
	t.Run(name, func(t *testing.T) {
		enc, got := roundTrip(t, v)
		if enc.Codec != want {
			t.Errorf("codec %v, want %v", enc.Codec, want)
		}
		if !reflect.DeepEqual(got, v) {
			t.Errorf("came back as %#v, want %#v", got, v)
		}
		wantJSON, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		if err := json.Unmarshal([]byte(jsonOf(t, enc)), &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(wantJSON, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("JSON %s, want %s", jsonOf(t, enc), wantJSON)
		}
		fromJSON, err := decodeValue[T](abi.Value{Codec: abi.CodecJSON, Data: wantJSON})
		if err != nil || !reflect.DeepEqual(fromJSON, v) {
			t.Errorf("from JSON: %#v, %v", fromJSON, err)
		}
	})
}

func TestCodecCBORShapes(t *testing.T) {
	cbor, js := abi.CodecCBOR, abi.CodecJSON
	shapeCase(t, "int stays fast JSON", 7, js)
	shapeCase(t, "int64", int64(math.MinInt64), js)
	shapeCase(t, "int32", int32(-5), cbor)
	shapeCase(t, "uint64 max", uint64(math.MaxUint64), cbor)
	shapeCase(t, "float64", 0.1, cbor)
	shapeCase(t, "float32", float32(0.1), cbor)
	shapeCase(t, "bool", true, cbor)
	shapeCase(t, "string", "a\x00b\u2028c", cbor)
	shapeCase(t, "[]string", []string{"x", "", "yz"}, cbor)
	shapeCase(t, "nil []string", []string(nil), cbor)
	shapeCase(t, "empty []string", []string{}, cbor)
	shapeCase(t, "[]float64", []float64{1, -2.5, 1e300, 5e-324}, cbor)
	shapeCase(t, "map[string]float64", map[string]float64{"a": 1, "b": 0.25}, cbor)
	shapeCase(t, "nil map", map[string]int(nil), cbor)
	shapeCase(t, "map[int]bool", map[int]bool{-1: true, 2: false}, cbor)
	shapeCase(t, "[3]string", [3]string{"a", "b", "c"}, cbor)
	shapeCase(t, "pointer", &cborInner{N: 3}, cbor)
	shapeCase(t, "nil pointer", (*cborInner)(nil), cbor)
	shapeCase(t, "recursive", cborList{1, &cborList{2, nil}}, js) // may hold a cycle: see TestCodecCycle
	shapeCase(t, "struct", cborShape{
		Name: "s", Inner: cborInner{N: 1, F: 1.5}, Ptr: &cborInner{On: true}, Bytes: []byte{0, 255},
		ID: [4]byte{1, 2, 3, 4}, ByInt: map[int64]string{math.MinInt64: "min"}, ByUint: map[uint8][]float64{9: {1}},
		Nested: [][]map[string]int16{{{"k": -1}}, nil}, cborEmbedded: cborEmbedded{"p"},
	}, cbor)
	// Types whose JSON form CBOR would not keep stay JSON.
	shapeCase(t, "time.Time", time.Date(2026, 12, 5, 4, 0, 0, 0, time.UTC), js)
	shapeCase(t, "map[string]any", map[string]any{"a": 1.0, "b": []any{"x"}}, js)
	shapeCase(t, "struct with an interface", struct{ V any }{V: "x"}, js)
	shapeCase(t, "struct with a Marshaler", struct{ M json.RawMessage }{M: json.RawMessage(`{"a":1}`)}, js)
	shapeCase(t, "string option", struct {
		N int `json:"n,string"`
	}{N: 4}, js)
	shapeCase(t, "struct with a cbor tag", struct {
		N int `cbor:"x"`
	}{N: 4}, js)
}

// A CBOR value decodes into a type that travels as JSON (an any) through
// its JSON, as a client's JSON would; refs and actor handles round trip
// inside values.
func TestCodecCBORInto(t *testing.T) {
	enc, err := encodeValue(map[string][]int{"a": {1, 2}})
	if err != nil || enc.Codec != abi.CodecCBOR {
		t.Fatalf("%v %v", enc.Codec, err)
	}
	if a, err := decodeValue[any](enc); err != nil || !reflect.DeepEqual(a, map[string]any{"a": []any{1.0, 2.0}}) {
		t.Errorf("into any: %#v, %v", a, err)
	}
	if m, err := decodeValue[map[string][]float64](enc); err != nil || m["a"][1] != 2 {
		t.Errorf("into floats: %v, %v", m, err)
	}
	// What JSON would decode, CBOR does: numbers fit any numeric type
	// that holds them (doc.go), whatever their encoding.
	three, _ := encodeValue(3.0)
	if n, err := decodeValue[int](three); err != nil || n != 3 {
		t.Errorf("3.0 into int: %v, %v", n, err)
	}
	floats, _ := encodeValue([]float64{1, 2})
	if ns, err := decodeValue[[]int8](floats); err != nil || !reflect.DeepEqual(ns, []int8{1, 2}) {
		t.Errorf("[1.0, 2.0] into []int8: %v, %v", ns, err)
	}
	small, _ := encodeValue(int32(3))
	if f, err := decodeValue[float64](small); err != nil || f != 3 {
		t.Errorf("int32 3 into float64: %v, %v", f, err)
	}
	half, _ := encodeValue(2.5)
	if _, err := decodeValue[int](half); !errors.Is(err, ErrDecode) {
		t.Errorf("2.5 into int: %v, want ErrDecode", err)
	}
	if _, err := decodeValue[[]string](enc); !errors.Is(err, ErrDecode) {
		t.Errorf("a map into []string: %v, want ErrDecode", err)
	}
	if _, err := decodeValue[string](abi.Value{Codec: abi.CodecCBOR, Data: []byte{0x61}}); !errors.Is(err, ErrDecode) {
		t.Errorf("truncated CBOR: %v, want ErrDecode", err)
	}
	if _, err := decodeValue[any](abi.Value{Codec: abi.CodecCBOR, Data: []byte{0xf9, 0x7e, 0}}); !errors.Is(err, ErrDecode) {
		t.Errorf("NaN into any: %v, want ErrDecode", err)
	}

	type holder struct {
		A ActorHandle[point]
		R []ObjectRef[int]
		Z ObjectRef[int] // the zero ref: null
	}
	in := holder{A: ActorHandle[point]{id: refTask, owner: "h:1"}, R: []ObjectRef[int]{refInt}}
	enc, got := roundTrip(t, in)
	if enc.Codec != abi.CodecCBOR || got.A.id != refTask || got.A.owner != "h:1" || got.R[0].id != refInt.id || !got.Z.id.IsZero() {
		t.Fatalf("%v %+v", enc.Codec, got)
	}
	if as := abi.NestedActors(enc); len(as) != 1 || as[0].ID != abi.ActorRef(refTask) {
		t.Errorf("NestedActors = %v", as)
	}
	want := `{"A":{"actor_id":"` + refTask.String() + `","owner":"h:1"},"R":[{"object_id":"` + refInt.id.String() +
		`","owner":"10.0.0.1:7000"}],"Z":null}`
	if js := jsonOf(t, enc); js != want {
		t.Errorf("JSON %s\nwant %s", js, want)
	}
	if _, err := encodeValue(holder{A: ActorHandle[point]{err: errors.New("no actor")}}); !errors.Is(err, ErrBadArgument) {
		t.Errorf("a failed handle: %v, want ErrBadArgument", err)
	}
}

// Modules built with this SDK decode CBOR; the host gives the others JSON.
func TestDescriptionListsCBOR(t *testing.T) {
	d := describe()
	if !d.Speaks(abi.CodecCBOR) || !d.Speaks(abi.CodecInts) {
		t.Errorf("codecs %v", d.Codecs)
	}
}

// A value that holds a cycle is refused with ErrBadArgument, as
// encoding/json refuses it, never followed until the stack runs out: a
// recursive type travels as JSON.
func TestCodecCycle(t *testing.T) {
	n := &cborList{Value: 1}
	n.Next = n
	if _, err := encodeValue(n); !errors.Is(err, ErrBadArgument) {
		t.Fatalf("a cycle: %v, want ErrBadArgument", err)
	}
	type tree struct {
		Kids map[string][]tree
	}
	if cborSafe(reflect.TypeFor[tree]()) || cborSafe(reflect.TypeFor[[]*cborList]()) {
		t.Error("a recursive type travels as CBOR")
	}
	type pair struct{ A, B cborInner }
	if !cborSafe(reflect.TypeFor[pair]()) {
		t.Error("a type used twice is not recursive")
	}
}
