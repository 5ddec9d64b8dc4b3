package ray

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strings"
	"sync"

	"github.com/fxamacker/cbor/v2"

	"github.com/rayhost/rayhost/internal/abi"
)

// Values other than []byte and integer slices travel as CBOR (codec
// "cbor", ABI.md §9) when their type's CBOR and JSON forms are the same
// value: the host gives clients, and modules that predate the codec, its
// JSON, which must be what encoding/json would have written. A type is
// left to JSON when it (or a type inside it) could differ: a custom
// json.Marshaler or Unmarshaler, an encoding.TextMarshaler (time.Time,
// net.IP…), an interface (decoding into one gives JSON's float64 and
// map[string]any), a map key JSON writes differently, a `json:",string"`
// field, a channel or a func; and a recursive type.

var (
	cborEnc cbor.EncMode
	cborDec cbor.DecMode
	// cborErr is why the modes could not be built (never, with these
	// options); values then go as JSON.
	cborErr error
)

func init() {
	cborEnc, cborErr = cbor.EncOptions{
		Sort:            cbor.SortCoreDeterministic, // maps in one order, as JSON's sorted keys
		ByteArray:       cbor.ByteArrayToArray,      // a [N]byte is an array, as in JSON
		BinaryMarshaler: cbor.BinaryMarshalerNone,
		OmitEmpty:       cbor.OmitEmptyGoValue, // omitempty as encoding/json reads it
		NaNConvert:      cbor.NaNConvertReject, // no JSON form: refused as encoding/json does
		InfConvert:      cbor.InfConvertReject,
		IndefLength:     cbor.IndefLengthForbidden, // the host walks definite lengths only
	}.EncMode()
	if cborErr != nil {
		return
	}
	cborDec, cborErr = cbor.DecOptions{
		MaxNestedLevels:   abi.MaxCBORDepth,
		MaxArrayElements:  2147483647, // a guest's memory bounds what it decodes
		MaxMapPairs:       2147483647,
		UTF8:              cbor.UTF8DecodeInvalid,  // a Go string may hold any bytes
		NaN:               cbor.NaNDecodeForbidden, // values have a JSON form
		Inf:               cbor.InfDecodeForbidden,
		BinaryUnmarshaler: cbor.BinaryUnmarshalerNone,
	}.DecMode()
}

var (
	cborMarshaler   = reflect.TypeFor[cbor.Marshaler]()
	cborUnmarshaler = reflect.TypeFor[cbor.Unmarshaler]()
	jsonMarshaler   = reflect.TypeFor[json.Marshaler]()
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textMarshaler   = reflect.TypeFor[encoding.TextMarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

var cborTypes sync.Map // reflect.Type → bool

// cborSafe reports whether values of t travel as CBOR.
func cborSafe(t reflect.Type) bool {
	if cborErr != nil {
		return false
	}
	if ok, found := cborTypes.Load(t); found {
		return ok.(bool)
	}
	ok := cborSafeType(t, map[reflect.Type]bool{})
	cborTypes.Store(t, ok)
	return ok
}

// cborSafeType judges t; seen holds the types being judged (false) and
// those found safe (true). A recursive type (a list, a tree) is not: its
// values may hold a cycle, which encoding/json refuses with an error and
// the CBOR encoder would follow until the stack ran out.
func cborSafeType(t reflect.Type, seen map[reflect.Type]bool) bool {
	if done, found := seen[t]; found {
		return done // false: t contains itself
	}
	seen[t] = false
	ok := cborSafeKind(t, seen)
	seen[t] = ok
	return ok
}

func cborSafeKind(t reflect.Type, seen map[reflect.Type]bool) bool {
	pt := reflect.PointerTo(t)
	if t.Implements(cborMarshaler) || pt.Implements(cborUnmarshaler) {
		return true // ObjectRef, ActorHandle: both forms written by us
	}
	for _, i := range []reflect.Type{jsonMarshaler, jsonUnmarshaler, textMarshaler, textUnmarshaler} {
		if t.Implements(i) || pt.Implements(i) {
			return false
		}
	}
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.String:
		return true
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return cborSafeType(t.Elem(), seen)
	case reflect.Map:
		switch t.Key().Kind() {
		case reflect.String, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		default:
			return false
		}
		return cborSafeType(t.Key(), seen) && cborSafeType(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() && !f.Anonymous {
				continue
			}
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			if _, hasCBOR := f.Tag.Lookup("cbor"); hasCBOR || strings.Contains(tag, ",string") {
				return false // a name or form JSON does not share
			}
			if !cborSafeType(f.Type, seen) {
				return false
			}
		}
		return true
	}
	return false // interfaces, channels, funcs, complex numbers
}

// encodeCBOR returns v's CBOR if its type travels as CBOR.
func encodeCBOR[T any](v *T) ([]byte, bool, error) {
	if !cborSafe(reflect.TypeFor[T]()) {
		return nil, false, nil
	}
	b, err := cborEnc.Marshal(v)
	return b, true, err
}

// cborNull is CBOR's null; 0xf7, undefined, reads as null too.
const cborNull = 0xf6

func isCBORNull(b []byte) bool { return len(b) == 1 && (b[0] == cborNull || b[0] == 0xf7) }
