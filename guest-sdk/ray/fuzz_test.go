package ray

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/rayhost/rayhost/internal/abi"
)

// FuzzDecodeValue decodes arbitrary bytes under an arbitrary codec into a
// few target types. It must never panic, must fail only with ErrDecode or a
// *TaskError (codec "error", and then always ErrTaskFailed), and a value that
// decodes must encode again into something that decodes to the same value.
func FuzzDecodeValue(f *testing.F) {
	for _, s := range []struct {
		codec byte
		data  string
	}{
		{byte(abi.CodecJSON), `42`},
		{byte(abi.CodecJSON), `"héllo"`},
		{byte(abi.CodecJSON), `[1,2,3]`},
		{byte(abi.CodecJSON), `{"X":1,"Y":2,"tag":"t"}`},
		{byte(abi.CodecJSON), `{"name":"j","input":{"object_id":"aabbccdd0102030405060708090a0b0c00000001","owner":"h:1"}}`},
		{byte(abi.CodecJSON), `{"input":{"object_id":"00"}}`},
		{byte(abi.CodecJSON), `null`},
		{byte(abi.CodecJSON), `1e400`},
		{byte(abi.CodecRaw), "\x00\xff raw"},
		{byte(abi.CodecError), `{"kind":"cancelled","message":"m","cause":{"kind":"panic"}}`},
		{byte(abi.CodecError), `garbage`},
		{3, "x"},
		{byte(abi.CodecInts), "\x01\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff"},
		{byte(abi.CodecInts), "\x00\x00\x00\x00\x00\x00\x00\x80"},
		{byte(abi.CodecCBOR), "\xa3aX\x01aY\x02ctagat"},               // point
		{byte(abi.CodecCBOR), "\x82\xf9\x7e\x00\xfa\x7f\x80\x00\x00"}, // [NaN, Inf]
		{byte(abi.CodecCBOR), "\x9f\x01\xff"},                         // indefinite
		{byte(abi.CodecCBOR), "\xa1einput" + string(abi.AppendRefCBOR(nil, abi.Ref{Owner: "h:1"}))},
		{5, "x"},
	} {
		f.Add(s.codec, []byte(s.data))
	}
	f.Fuzz(func(t *testing.T, codec byte, data []byte) {
		v := abi.Value{Codec: abi.Codec(codec), Data: data}
		fuzzDecode[int](t, v)
		fuzzDecode[string](t, v)
		fuzzDecode[[]byte](t, v)
		fuzzDecode[[]int](t, v)
		fuzzDecode[[]int32](t, v)
		fuzzDecode[[]float64](t, v)
		fuzzDecode[point](t, v)
		fuzzDecode[job](t, v)
		fuzzDecode[ObjectRef[int]](t, v)
		fuzzDecode[map[string]any](t, v)
		fuzzDecode[any](t, v)
	})
}

func fuzzDecode[T any](t *testing.T, v abi.Value) {
	t.Helper()
	got, err := decodeValue[T](v)
	if err != nil {
		var te *TaskError
		switch {
		case errors.As(err, &te):
			if v.Codec != abi.CodecError {
				t.Fatalf("decodeValue[%T](%v %q): a *TaskError from a %v value", got, v.Codec, v.Data, v.Codec)
			}
			if !errors.Is(err, ErrTaskFailed) {
				t.Fatalf("decodeValue[%T]: %v is not ErrTaskFailed", got, err)
			}
		case !errors.Is(err, ErrDecode):
			t.Fatalf("decodeValue[%T](%v %q) = %v; want ErrDecode", got, v.Codec, v.Data, err)
		}
		return
	}
	if v.Codec == abi.CodecError {
		t.Fatalf("decodeValue[%T] of an error value succeeded: %#v", got, got)
	}
	enc, err := encodeValue(got)
	if err != nil {
		t.Fatalf("decodeValue[%T](%v %q) = %#v, which does not encode: %v", got, v.Codec, v.Data, got, err)
	}
	again, err := decodeValue[T](enc)
	if err != nil {
		t.Fatalf("decodeValue[%T](%v %q) = %#v; its encoding %v %q does not decode: %v",
			got, v.Codec, v.Data, got, enc.Codec, enc.Data, err)
	}
	// Raw bytes that are not UTF-8 cannot survive as a JSON string: a
	// string decoded from them comes back with U+FFFD. Everything else
	// survives the first trip unchanged.
	lossy := v.Codec == abi.CodecRaw && !utf8.Valid(v.Data) && reflect.TypeFor[T]().Kind() == reflect.String
	if !lossy && !reflect.DeepEqual(got, again) {
		t.Fatalf("decodeValue[%T](%v %q): %#v came back as %#v (via %v %q)", got, v.Codec, v.Data, got, again, enc.Codec, enc.Data)
	}
	// From there on, encoding and decoding is a fixed point.
	enc2, err := encodeValue(again)
	if err != nil {
		t.Fatalf("re-encoding %#v: %v", again, err)
	}
	again2, err := decodeValue[T](enc2)
	if err != nil || !reflect.DeepEqual(again, again2) {
		t.Fatalf("decodeValue[%T] not stable: %#v via %v %q gave %#v, %v", got, again, enc2.Codec, enc2.Data, again2, err)
	}
	if enc3, err := encodeValue(again2); err != nil || enc3.Codec != enc2.Codec || !bytes.Equal(enc3.Data, enc2.Data) {
		t.Fatalf("encoding of %#v not stable: %q then %q (%v)", again2, enc2.Data, enc3.Data, err)
	}
}
