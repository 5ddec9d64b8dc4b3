package ray

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/rayhost/rayhost/internal/abi"
)

// The value codec: []byte travels raw (codec "raw"), a non-nil []int,
// []int64 or []int32 as 8-byte integers (codec "ints"), an int or int64 as
// JSON text (faster than CBOR under wasm), other values whose type has the
// same CBOR and JSON forms as CBOR (codec "cbor", cbor.go), the rest as
// JSON (codec "json"). The host gives clients, and guests of modules that
// predate a codec, its JSON, so curl clients can pass arguments and read
// results; a guest decodes each of them, and JSON from clients, into any
// type. A failed task's objects hold a TaskError (codec "error").

func encodeValue[T any](v T) (abi.Value, error) {
	if b, ok := any(&v).(*[]byte); ok { // through a pointer: no allocation
		return abi.Value{Codec: abi.CodecRaw, Data: *b}, nil
	}
	if b, ok := any(v).([]byte); ok { // T is an interface holding bytes
		return abi.Value{Codec: abi.CodecRaw, Data: b}, nil
	}
	if data, ok := encodeInts(&v); ok {
		return abi.Value{Codec: abi.CodecInts, Data: data}, nil
	}
	if data, ok := fastEncode(&v); ok {
		return abi.Value{Codec: abi.CodecJSON, Data: data}, nil
	}
	if data, ok, err := encodeCBOR(&v); ok {
		if err != nil {
			return abi.Value{}, fmt.Errorf("%w: %v", ErrBadArgument, err)
		}
		return abi.Value{Codec: abi.CodecCBOR, Data: data}, nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return abi.Value{}, fmt.Errorf("%w: %v", ErrBadArgument, err)
	}
	return abi.Value{Codec: abi.CodecJSON, Data: data}, nil
}

func decodeValue[T any](v abi.Value) (T, error) {
	var out T
	switch v.Codec {
	case abi.CodecError:
		return out, taskErrorFrom(abi.DecodeTaskError(v.Data))
	case abi.CodecRaw:
		switch p := any(&out).(type) {
		case *[]byte:
			*p = v.Data
			return out, nil
		case *string:
			*p = string(v.Data)
			return out, nil
		case *any:
			*p = v.Data
			return out, nil
		}
		return out, fmt.Errorf("%w: raw bytes into %T", ErrDecode, out)
	case abi.CodecCBOR:
		var cborErr error
		if cborSafe(reflect.TypeFor[T]()) {
			if cborErr = cborDec.Unmarshal(v.Data, &out); cborErr == nil {
				return out, nil
			}
			var zero T
			out = zero
		}
		// Into a type that travels as JSON (an any, a time.Time…), or
		// what CBOR does not decode but its JSON does (a float 3.0 into an
		// int, as JSON's 3): as its JSON.
		js, err := v.ToJSON()
		if err != nil {
			if cborErr != nil {
				err = cborErr
			}
			return out, fmt.Errorf("%w: into %T: %v", ErrDecode, out, err)
		}
		if err := json.Unmarshal(js.Data, &out); err != nil {
			return out, fmt.Errorf("%w: into %T: %v", ErrDecode, out, err)
		}
		return out, nil
	case abi.CodecInts:
		if ok, err := decodeInts(v.Data, &out); ok {
			return out, err
		}
		// Into another type (an any, a []float64…): as its JSON.
		js, err := v.ToJSON()
		if err != nil {
			return out, fmt.Errorf("%w: %v", ErrDecode, err)
		}
		if err := json.Unmarshal(js.Data, &out); err != nil {
			return out, fmt.Errorf("%w: into %T: %v", ErrDecode, out, err)
		}
		return out, nil
	case abi.CodecJSON:
		if fastDecode(v.Data, &out) {
			return out, nil
		}
		if err := json.Unmarshal(v.Data, &out); err != nil {
			return out, fmt.Errorf("%w: into %T: %v", ErrDecode, out, err)
		}
		return out, nil
	}
	return out, fmt.Errorf("%w: unknown codec %d", ErrDecode, v.Codec)
}

// encodeInts returns the "ints" bytes of a non-nil integer slice (a nil
// one stays JSON null, so it decodes as nil).
func encodeInts(v any) ([]byte, bool) {
	switch x := v.(type) {
	case *[]int:
		if *x != nil {
			return abi.AppendInts(make([]byte, 0, 8*len(*x)), *x), true
		}
	case *[]int64:
		if *x != nil {
			return abi.AppendInts(make([]byte, 0, 8*len(*x)), *x), true
		}
	case *[]int32:
		if *x != nil {
			return abi.AppendInts(make([]byte, 0, 8*len(*x)), *x), true
		}
	}
	return nil, false
}

// decodeInts decodes "ints" bytes into out if it is an integer slice.
func decodeInts(data []byte, out any) (bool, error) {
	var err error
	switch p := out.(type) {
	case *[]int:
		*p, err = abi.DecodeInts[int](data, minInt, maxInt)
	case *[]int64:
		*p, err = abi.DecodeInts[int64](data, minI64, maxI64)
	case *[]int32:
		*p, err = abi.DecodeInts[int32](data, minI32, maxI32)
	default:
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	return true, nil
}
