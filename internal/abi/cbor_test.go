package abi

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/rayhost/rayhost/internal/ids"
)

// cborOf encodes v as the Go SDK does (a cbor EncMode with Go's own float
// widths and maps sorted).
func cborOf(t testing.TB, v any) []byte {
	t.Helper()
	em, err := cbor.EncOptions{Sort: cbor.SortCoreDeterministic, ByteArray: cbor.ByteArrayToArray}.EncMode()
	if err != nil {
		t.Fatal(err)
	}
	b, err := em.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jsonEqual reports whether a and b are the same JSON value.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

type cborPoint struct {
	X, Y  float64
	Name  string            `json:"name"`
	Tags  []string          `json:"tags,omitempty"`
	Bytes []byte            `json:"bytes"`
	Byte4 [4]byte           `json:"byte4"`
	Small float32           `json:"small"`
	Ints  map[int]string    `json:"ints"`
	Inner *cborPoint        `json:"inner,omitempty"`
	Attrs map[string]uint64 `json:"attrs"`
}

// The JSON of a CBOR value is the JSON encoding/json writes for the same
// Go value.
func TestCBORToJSONMatchesEncodingJSON(t *testing.T) {
	for _, v := range []any{
		0, 1, -1, 23, 24, 255, 256, -24, -25, 65536, math.MaxInt64, math.MinInt64, uint64(math.MaxUint64),
		0.0, 1.5, -0.25, 1e21, 1e-7, 123456789.125, math.MaxFloat64, math.SmallestNonzeroFloat64,
		float32(0.1), float32(3.4e38), float32(1e-7),
		"", "héllo", "quote \" backslash \\ newline \n tab \t nul \x00 bell \x07 <&>", strings.Repeat("x", 300),
		"bad \xff\xfe utf-8 \xe2\x82", "ok \u2028 \U0001F600",
		true, false, nil,
		[]string{"a", "b", ""}, []string(nil), []any{1, "x", nil, []int{}}, []byte("bytes\x00\xff"), []byte{},
		map[string]float64{"a": 1.5, "b": -2, "": 0}, map[int]bool{1: true, -3: false},
		map[string]any{"nested": map[string]any{"deep": []any{map[string]any{}}}},
		cborPoint{X: 1, Y: 2.5, Name: "p", Tags: []string{"t"}, Bytes: []byte{1, 2, 3}, Byte4: [4]byte{9, 8, 7, 6},
			Small: 0.3, Ints: map[int]string{7: "seven"}, Inner: &cborPoint{Name: "in"}, Attrs: map[string]uint64{"k": math.MaxUint64}},
	} {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		data := cborOf(t, v)
		got, err := Value{Codec: CodecCBOR, Data: data}.ToJSON()
		if err != nil {
			t.Errorf("%#v: %v", v, err)
			continue
		}
		if got.Codec != CodecJSON || !jsonEqual(t, got.Data, want) {
			t.Errorf("%#v: JSON %s, want %s", v, got.Data, want)
		}
		if int64(len(got.Data)) > MaxCBORJSON(int64(len(data))) {
			t.Errorf("%#v: %d bytes of JSON from %d of CBOR, past the bound", v, len(got.Data), len(data))
		}
	}
}

// Floats print as encoding/json prints them (exponent form outside
// [1e-6, 1e21), no leading zero in the exponent; a float32 at its width).
func TestCBORFloatText(t *testing.T) {
	for _, c := range []struct {
		data []byte
		want string
	}{
		{[]byte{0xf9, 0x3c, 0x00}, "1"},                                       // half 1.0
		{[]byte{0xf9, 0x00, 0x01}, "5.960464477539063e-8"},                    // smallest half subnormal
		{[]byte{0xf9, 0xfb, 0xff}, "-65504"},                                  // half max, negated
		{[]byte{0xfa, 0x3d, 0xcc, 0xcc, 0xcd}, "0.1"},                         // float32 0.1
		{[]byte{0xfb, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a}, "0.1"}, // float64 0.1
		{[]byte{0xfb, 0x44, 0x4b, 0x1a, 0xe4, 0xd6, 0xe2, 0xef, 0x50}, "1e+21"},
		{[]byte{0xc2, 0x49, 1, 0, 0, 0, 0, 0, 0, 0, 0}, "18446744073709551616"}, // bignum 2^64
		{[]byte{0xc3, 0x41, 0}, "-1"},                                           // negative bignum
		{[]byte{0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "-18446744073709551616"},
		{[]byte{0xf7}, "null"},                                     // undefined
		{[]byte{0xc1, 0x1a, 0x5f, 0x5e, 0x10, 0x00}, "1600000000"}, // tag 1: its content
		{[]byte{0xd9, 0xd9, 0xf7, 0x80}, "[]"},
		{[]byte{0x62, 0xc3, 0x28}, `"\ufffd("`},          // bad UTF-8, as encoding/json writes it
		{[]byte{0xa1, 0x61, 0xff, 0x01}, `{"\ufffd":1}`}, // in a key                     // self-described CBOR
	} {
		got, err := CBORToJSON(nil, c.data)
		if err != nil || string(got) != c.want {
			t.Errorf("% x: %s, %v; want %s", c.data, got, err, c.want)
		}
	}
}

// What has no JSON form, or is not one well-formed item, is an error
// wrapping ErrCBOR, never a panic or a large allocation.
func TestCBORToJSONRefuses(t *testing.T) {
	deep := bytes.Repeat([]byte{0x81}, MaxCBORDepth+1)
	deep = append(deep, 0)
	deepTags := bytes.Repeat([]byte{0xc6}, MaxCBORDepth+1)
	deepTags = append(deepTags, 0)
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"trailing", []byte{0x01, 0x02}, "trailing"},
		{"truncated head", []byte{0x19, 0x01}, "truncated"},
		{"truncated array", []byte{0x82, 0x01}, "past the end"},
		{"huge array", []byte{0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "past the end"},
		{"huge map", []byte{0xbb, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00}, "past the end"},
		{"huge string", []byte{0x7b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "past the end"},
		{"huge bytes", []byte{0x5a, 0xff, 0xff, 0xff, 0xff, 1, 2}, "past the end"},
		{"indefinite array", []byte{0x9f, 0x01, 0xff}, "indefinite"},
		{"indefinite text", []byte{0x7f, 0x61, 'a', 0xff}, "indefinite"},
		{"break", []byte{0xff}, "indefinite"},
		{"reserved", []byte{0x1c}, "reserved"},
		{"deep arrays", deep, "deeper"},
		{"deep tags", deepTags, "deeper"},
		{"NaN", []byte{0xf9, 0x7e, 0x00}, "NaN"},
		{"Inf", []byte{0xfa, 0x7f, 0x80, 0x00, 0x00}, "Inf"},
		{"-Inf", []byte{0xfb, 0xff, 0xf0, 0, 0, 0, 0, 0, 0}, "Inf"},
		{"simple value", []byte{0xe0}, "simple value"},
		{"simple value 255", []byte{0xf8, 0xff}, "simple value"},
		{"bytes key", []byte{0xa1, 0x41, 'k', 0x01}, "map key"},
		{"float key", []byte{0xa1, 0xf9, 0x3c, 0x00, 0x01}, "map key"},
		{"array key", []byte{0xa1, 0x80, 0x01}, "map key"},
		{"big bignum", append([]byte{0xc2, 0x58, 65}, make([]byte, 65)...), "bignum"},
		{"bignum of text", []byte{0xc2, 0x61, '1'}, "bignum"},
		{"ref of a short id", append(append([]byte{}, refHead...), 0x82, 0x43, 1, 2, 3, 0x60), "20-byte"},
		{"ref not an array", append(append([]byte{}, refHead...), 0x01), "[id, owner]"},
		{"ref of 3 items", append(append([]byte{}, refHead...), 0x83, 0x40, 0x60, 0x60), "[id, owner]"},
		{"ref owner not text", append(append(append(append([]byte{}, refHead...), 0x82, 0x54), make([]byte, 20)...), 0x01), "not a text"},
		{"actor of an object id", append(append(append(append([]byte{}, actorHead...), 0x82, 0x54), make([]byte, 20)...), 0x60), "16-byte"},
	} {
		got, err := Value{Codec: CodecCBOR, Data: c.data}.ToJSON()
		if !errors.Is(err, ErrCBOR) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, %v; want an ErrCBOR saying %q", c.name, got, err, c.want)
		}
	}
}

// References inside a CBOR value are its tags; their JSON is the objects
// the SDK's MarshalJSON writes, and NestedRefs and NestedActors find them
// (also inside a value whose JSON conversion fails).
func TestCBORRefs(t *testing.T) {
	task := ids.TaskID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	r1 := Ref{ID: task.Return(0), Owner: "h1:7000"}
	r2 := Ref{ID: task.Put(3)} // no owner
	actor := ids.TaskID{0xaa, 0xbb}

	// {"a": ref1, "list": [ref2, actor, "x"], "nan": NaN}
	build := func(nan bool) []byte {
		b := []byte{0xa3}
		b = appendTextCBOR(b, "a")
		b = AppendRefCBOR(b, r1)
		b = appendTextCBOR(b, "list")
		b = append(b, 0x83)
		b = AppendRefCBOR(b, r2)
		b = AppendActorCBOR(b, actor, "h2:7000")
		b = appendTextCBOR(b, "x")
		b = appendTextCBOR(b, "f")
		if nan {
			return append(b, 0xf9, 0x7e, 0x00)
		}
		return append(b, 0xf9, 0x3c, 0x00)
	}
	v := Value{Codec: CodecCBOR, Data: build(false)}
	js, err := v.ToJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"a":{"object_id":"` + r1.ID.String() + `","owner":"h1:7000"},"list":[{"object_id":"` + r2.ID.String() +
		`"},{"actor_id":"` + actor.String() + `","owner":"h2:7000"},"x"],"f":1}`
	if string(js.Data) != want {
		t.Errorf("JSON %s\nwant %s", js.Data, want)
	}
	// The JSON form holds the same references (in map order there: sorted
	// here).
	for _, val := range []Value{v, js, {Codec: CodecCBOR, Data: build(true)}} {
		got := NestedRefs(val)
		slices.SortFunc(got, func(a, b Ref) int { return bytes.Compare(b.ID[:], a.ID[:]) })
		if !reflect.DeepEqual(got, []Ref{r2, r1}) {
			t.Errorf("%v: NestedRefs = %v", val.Codec, got)
		}
		if got := NestedActors(val); !reflect.DeepEqual(got, []Ref{{ID: ActorRef(actor), Owner: "h2:7000"}}) {
			t.Errorf("%v: NestedActors = %v", val.Codec, got)
		}
	}
	if _, err := (Value{Codec: CodecCBOR, Data: build(true)}).ToJSON(); !errors.Is(err, ErrCBOR) {
		t.Errorf("NaN converted: %v", err)
	}

	// A ref's head inside a byte string is no ref; no head, no walk.
	inBytes := append([]byte{0x58, 30}, AppendRefCBOR(nil, Ref{ID: task.Return(0)})[:30]...)
	if got := NestedRefs(Value{Codec: CodecCBOR, Data: inBytes}); got != nil {
		t.Errorf("a ref's bytes inside a byte string: %v", got)
	}
	if got := NestedRefs(Value{Codec: CodecCBOR, Data: cborOf(t, []string{"a", "b"})}); got != nil {
		t.Errorf("no refs: %v", got)
	}
	// A forged ref (a short ID) makes the value count none, as a JSON value
	// that does not parse does; its conversion is an error.
	forged := append(append([]byte{0x82}, AppendRefCBOR(nil, r1)...), refHead...)
	forged = append(forged, 0x82, 0x42, 1, 2, 0x60)
	if got := NestedRefs(Value{Codec: CodecCBOR, Data: forged}); got != nil {
		t.Errorf("forged: %v", got)
	}

	// Decode round trips.
	if got, err := DecodeRefCBOR(AppendRefCBOR(nil, r1)); err != nil || got != r1 {
		t.Errorf("DecodeRefCBOR = %v, %v", got, err)
	}
	if id, owner, err := DecodeActorCBOR(AppendActorCBOR(nil, actor, "o")); err != nil || id != actor || owner != "o" {
		t.Errorf("DecodeActorCBOR = %v, %q, %v", id, owner, err)
	}
	if _, err := DecodeRefCBOR(AppendActorCBOR(nil, actor, "o")); !errors.Is(err, ErrCBOR) {
		t.Errorf("an actor as a ref: %v", err)
	}
	if _, err := DecodeRefCBOR(append(AppendRefCBOR(nil, r1), 0)); !errors.Is(err, ErrCBOR) {
		t.Errorf("trailing byte: %v", err)
	}
	// A long owner takes a longer text head.
	long := Ref{ID: r1.ID, Owner: strings.Repeat("o", 70000)}
	if got, err := DecodeRefCBOR(AppendRefCBOR(nil, long)); err != nil || got != long {
		t.Errorf("long owner: %v", err)
	}
}

// Modules that do not list "cbor" get its values as JSON; those that do,
// as they are.
func TestCBORForGuest(t *testing.T) {
	v := Value{Codec: CodecCBOR, Data: cborOf(t, map[string]int{"a": 1})}
	old := &Description{ABI: 1, Codecs: []string{"ints"}}
	fresh := &Description{ABI: 1, Codecs: []string{"ints", "cbor"}}
	if got, err := old.ForGuest(v); err != nil || got.Codec != CodecJSON || string(got.Data) != `{"a":1}` {
		t.Errorf("old module: %v %s %v", got.Codec, got.Data, err)
	}
	if got, err := fresh.ForGuest(v); err != nil || got.Codec != CodecCBOR {
		t.Errorf("fresh module: %v %v", got.Codec, err)
	}
	if MaxJSON(CodecCBOR, 10) != 90 || MaxJSON(CodecJSON, 10) != 10 || MaxJSON(CodecInts, 16) != MaxIntsJSON(16) ||
		MaxCBORJSON(-1) != math.MaxInt64 || MaxCBORJSON(math.MaxInt64/9+1) != math.MaxInt64 {
		t.Error("MaxJSON bounds")
	}
}

// FuzzCBORToJSON: any bytes either convert to valid JSON within the bound
// or fail with ErrCBOR; the reference walk never panics, and finds what
// the JSON holds when the conversion succeeds (the JSON may hold more: a
// plain map with an "object_id" key looks like a ref there).
func FuzzCBORToJSON(f *testing.F) {
	task := ids.TaskID{7}
	f.Add(cborOf(f, map[string]any{"a": []any{1, "x", 2.5, nil, true}, "b": []byte{1}}))
	f.Add(AppendRefCBOR([]byte{0x82}, Ref{ID: task.Return(0), Owner: "h:1"}))
	f.Add(AppendActorCBOR(nil, task, ""))
	f.Add([]byte{0xc2, 0x41, 0x05})
	f.Add([]byte{0xf9, 0x7e, 0x00})
	f.Add([]byte{0x9f, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		refs := NestedRefs(Value{Codec: CodecCBOR, Data: data})
		actors := NestedActors(Value{Codec: CodecCBOR, Data: data})
		js, err := CBORToJSON(nil, data)
		if err != nil {
			if !errors.Is(err, ErrCBOR) {
				t.Fatalf("error %v does not wrap ErrCBOR", err)
			}
			return
		}
		if !json.Valid(js) {
			t.Fatalf("% x: invalid JSON %s", data, js)
		}
		if int64(len(js)) > MaxCBORJSON(int64(len(data))) {
			t.Fatalf("% x: %d bytes of JSON, past the bound", data, len(js))
		}
		jv := Value{Codec: CodecJSON, Data: js}
		if got := NestedRefs(jv); len(got) < len(refs) {
			t.Fatalf("% x: %d refs in CBOR, %d in its JSON %s", data, len(refs), len(got), js)
		}
		if got := NestedActors(jv); len(got) < len(actors) {
			t.Fatalf("% x: %d actors in CBOR, %d in its JSON %s", data, len(actors), len(got), js)
		}
	})
}

// Every half float, the densest item, keeps the bound, alone and in an
// array.
func TestCBORHalfFloatsBound(t *testing.T) {
	for h := range 1 << 16 {
		one := []byte{0xf9, byte(h >> 8), byte(h)}
		js, err := CBORToJSON(nil, one)
		if err != nil {
			continue // NaN, infinities
		}
		if int64(len(js)) > MaxCBORJSON(3) {
			t.Fatalf("% x: %s past the bound", one, js)
		}
		many := append([]byte{0x98, 200}, bytes.Repeat(one, 200)...)
		if js, err := CBORToJSON(nil, many); err != nil || int64(len(js)) > MaxCBORJSON(int64(len(many))) {
			t.Fatalf("200 × % x: %d bytes, %v", one, len(js), err)
		}
	}
}

// BenchmarkCBORToJSON: the host's conversion of a record of 1,000 fields
// (what a client's Get of a guest's map costs the host), and the scan of
// a value without refs (what every value costs reference counting).
func BenchmarkCBORToJSON(b *testing.B) {
	m := make(map[string]any, 1000)
	for i := range 1000 {
		m[strings.Repeat("k", i%20)+string(rune('a'+i%26))+string(rune('a'+i/26))] = []any{i, 1.5, "text"}
	}
	data := cborOf(b, m)
	b.Run("json", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := CBORToJSON(nil, data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("refs", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			NestedRefs(Value{Codec: CodecCBOR, Data: data})
		}
	})
}
