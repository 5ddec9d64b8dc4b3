package ray

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

var (
	refTask = ids.TaskID{0xaa, 0xbb, 0xcc, 0xdd, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	refInt  = ObjectRef[int]{id: refTask.Return(0), owner: "10.0.0.1:7000"}
	refPut  = ObjectRef[[]byte]{id: refTask.Put(3)} // no owner
)

// job is a value that holds refs: they travel as references that the task
// receiving the value may Get.
type job struct {
	Name  string              `json:"name"`
	Input ObjectRef[int]      `json:"input"`
	Parts []ObjectRef[[]byte] `json:"parts"`
	Opt   *ObjectRef[int]     `json:"opt"`
}

func TestObjectRefJSONNested(t *testing.T) {
	in := job{Name: "j", Input: refInt, Parts: []ObjectRef[[]byte]{refPut, {id: refTask.Put(4), owner: "o:2"}}}
	enc, err := encodeValue(in)
	if err != nil {
		t.Fatal(err)
	}
	if enc.Codec != abi.CodecCBOR {
		t.Fatalf("codec = %v, want cbor", enc.Codec)
	}
	// Its JSON (what clients get) holds the refs' JSON objects; the host
	// finds the refs in either form.
	js := jsonOf(t, enc)
	want := `"input":{"object_id":"` + refTask.Return(0).String() + `","owner":"10.0.0.1:7000"}`
	if !strings.Contains(js, want) {
		t.Errorf("%s does not contain %s", js, want)
	}
	if !strings.Contains(js, `{"object_id":"`+refTask.Put(3).String()+`"}`) {
		t.Errorf("%s: a ref without an owner should omit it", js)
	}
	wantRefs := []abi.Ref{refInt.abiRef(), refPut.abiRef(), {ID: refTask.Put(4), Owner: "o:2"}}
	if got := abi.NestedRefs(enc); !reflect.DeepEqual(got, wantRefs) {
		t.Errorf("NestedRefs = %v, want %v", got, wantRefs)
	}
	// The JSON form still decodes (a client's, an old module's).
	if got, err := decodeValue[job](abi.Value{Codec: abi.CodecJSON, Data: []byte(js)}); err != nil || got.Input != in.Input {
		t.Errorf("from its JSON: %+v, %v", got, err)
	}
	got, err := decodeValue[job](enc)
	if err != nil {
		t.Fatalf("decodeValue(%s): %v", enc.Data, err)
	}
	if got.Name != in.Name || got.Input != in.Input || got.Opt != nil || len(got.Parts) != 2 ||
		got.Parts[0] != in.Parts[0] || got.Parts[1] != in.Parts[1] {
		t.Fatalf("round trip\n got  %+v\n want %+v", got, in)
	}
	if got.Input.ID() != refTask.Return(0).String() || got.Input.Owner() != "10.0.0.1:7000" || got.Input.Err() != nil {
		t.Errorf("decoded ref: ID %s owner %q err %v", got.Input.ID(), got.Input.Owner(), got.Input.Err())
	}

	t.Run("pointer field", func(t *testing.T) {
		r := refInt
		in := job{Input: refInt, Opt: &r}
		_, got := roundTrip(t, in)
		if got.Opt == nil || *got.Opt != refInt {
			t.Fatalf("Opt = %v", got.Opt)
		}
	})
	t.Run("ref as the whole value", func(t *testing.T) {
		_, got := roundTrip(t, refInt)
		if got != refInt {
			t.Fatalf("got %v", got)
		}
	})
	t.Run("decoded ref is usable as an argument", func(t *testing.T) {
		arg, err := encodeArg(got.Input, reflect.TypeFor[int]())
		if err != nil || !arg.IsRef || arg.Ref != (abi.Ref{ID: refTask.Return(0), Owner: "10.0.0.1:7000"}) {
			t.Fatalf("encodeArg = %+v, %v", arg, err)
		}
	})
}

func TestObjectRefJSONInvalid(t *testing.T) {
	valid := refTask.Return(0).String()
	zeroIndex := valid[:len(valid)-8] + "00000000"
	cases := []struct {
		name      string
		json      string
		wantDecod bool // whether the error wraps ErrDecode at the UnmarshalJSON level
	}{
		{"not hex", `{"object_id":"` + strings.Repeat("zz", ids.ObjectIDSize) + `"}`, true},
		{"too short", `{"object_id":"abcd"}`, true},
		{"too long", `{"object_id":"` + valid + `00"}`, true},
		{"index 0", `{"object_id":"` + zeroIndex + `"}`, true},
		{"all zero", `{"object_id":"` + strings.Repeat("0", 2*ids.ObjectIDSize) + `"}`, true},
		{"missing", `{"owner":"h:1"}`, true},
		{"empty object", `{}`, true},
		{"wrong json type", `"` + valid + `"`, false},
		{"number", `5`, false},
		{"id not a string", `{"object_id":5}`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var r ObjectRef[int]
			err := r.UnmarshalJSON([]byte(c.json))
			if err == nil {
				t.Fatalf("UnmarshalJSON(%s) accepted it: %v", c.json, r)
			}
			if got := errors.Is(err, ErrDecode); got != c.wantDecod {
				t.Errorf("UnmarshalJSON(%s) = %v; errors.Is(ErrDecode) = %v, want %v", c.json, err, got, c.wantDecod)
			}
			// Nested in a value, every one of them is a decode error.
			_, err = decodeValue[job](abi.Value{Codec: abi.CodecJSON, Data: []byte(`{"input":` + c.json + `}`)})
			if !errors.Is(err, ErrDecode) {
				t.Errorf("decodeValue = %v, want ErrDecode", err)
			}
		})
	}
}

func TestObjectRefWithErrorDoesNotMarshal(t *testing.T) {
	boom := errors.New("boom")
	r := ObjectRef[int]{err: boom}
	if _, err := json.Marshal(r); !errors.Is(err, boom) {
		t.Fatalf("json.Marshal(ref with error) = %v, want boom", err)
	}
	if _, err := encodeValue(job{Input: r}); !errors.Is(err, ErrBadArgument) {
		t.Fatalf("encodeValue(value holding a failed ref) = %v, want ErrBadArgument", err)
	}
}

// BUG (reported): a value whose ObjectRef field was never set encodes
// (object_id "000…0"), but the encoding does not decode: UnmarshalJSON
// rejects the zero ID, so the object can be stored and every Get of it fails.
// Likewise `"input": null` cannot be decoded. The test asserts the symmetric
// behaviour and skips while the bug is there.
func TestObjectRefZeroValueRoundTrip(t *testing.T) {
	enc, err := encodeValue(job{Name: "no input yet"})
	if err != nil {
		// Refusing to encode it would also be consistent.
		if !errors.Is(err, ErrBadArgument) {
			t.Fatalf("encodeValue = %v, want nil or ErrBadArgument", err)
		}
		return
	}
	if _, err := decodeValue[job](enc); err != nil {
		t.Fatalf("a zero ObjectRef encodes as %s but does not decode: %v", enc.Data, err)
	}
}

func TestRefs(t *testing.T) {
	refs := []ObjectRef[int]{refInt, {id: refTask.Return(1)}}
	anyRefs := Refs(refs)
	if len(anyRefs) != 2 || anyRefs[0].ID() != refInt.ID() || anyRefs[1].abiRef().ID != refTask.Return(1) {
		t.Fatalf("Refs = %v", anyRefs)
	}
	if refInt.String() != "ObjectRef("+refTask.Return(0).String()+")" {
		t.Errorf("String() = %q", refInt.String())
	}
	if got := anyRefs[0].elemType(); got != reflect.TypeFor[int]() {
		t.Errorf("elemType = %v, want int", got)
	}
}
