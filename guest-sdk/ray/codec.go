package ray

import (
	"encoding/json"
	"fmt"

	"github.com/rayhost/rayhost/internal/abi"
)

// The value codec: []byte travels raw (codec "raw"), everything else as JSON
// (codec "json"), so curl clients can pass arguments and read results. A
// failed task's objects hold a TaskError (codec "error").

func encodeValue[T any](v T) (abi.Value, error) {
	if b, ok := any(&v).(*[]byte); ok { // through a pointer: no allocation
		return abi.Value{Codec: abi.CodecRaw, Data: *b}, nil
	}
	if b, ok := any(v).([]byte); ok { // T is an interface holding bytes
		return abi.Value{Codec: abi.CodecRaw, Data: b}, nil
	}
	if data, ok := fastEncode(&v); ok {
		return abi.Value{Codec: abi.CodecJSON, Data: data}, nil
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
