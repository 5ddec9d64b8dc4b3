package abi

import (
	"bytes"
	"encoding/json"

	"github.com/rayhost/rayhost/internal/ids"
)

// refKey is how an ObjectRef starts inside a JSON value (§9 of ABI.md:
// {"object_id": hex, "owner": addr}).
var refKey = []byte(`"object_id"`)

// NestedRefs returns the ObjectRefs a value contains (§9: an ObjectRef
// inside a JSON value is {"object_id": hex, "owner": addr}), once per
// occurrence, in the order they appear; in a CBOR value, the TagObjectRef
// items (cbor.go). Values of other codecs, and JSON
// values that never mention "object_id", contain none and cost one scan.
// A value that does not parse contains none.
func NestedRefs(v Value) []Ref {
	if v.Codec == CodecCBOR {
		return cborRefs(v.Data, TagObjectRef)
	}
	if v.Codec != CodecJSON || !bytes.Contains(v.Data, refKey) {
		return nil
	}
	var tree any
	if err := json.Unmarshal(v.Data, &tree); err != nil {
		return nil
	}
	var out []Ref
	var walk func(x any)
	walk = func(x any) {
		switch x := x.(type) {
		case map[string]any:
			if s, ok := x["object_id"].(string); ok {
				if id, err := ids.ParseObjectID(s); err == nil {
					owner, _ := x["owner"].(string)
					out = append(out, Ref{ID: id, Owner: owner})
				}
			}
			for _, y := range x {
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		}
	}
	walk(tree)
	return out
}
