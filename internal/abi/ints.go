package abi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// ErrInts: the bytes of a CodecInts value are not whole 8-byte integers.
var ErrInts = errors.New("abi: ints value: not a whole number of 8-byte integers")

// AppendInts appends xs as CodecInts bytes.
func AppendInts[T ~int | ~int64 | ~int32](dst []byte, xs []T) []byte {
	for _, x := range xs {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(int64(x)))
	}
	return dst
}

// DecodeInts decodes CodecInts bytes into a new slice; a number outside
// [lo, hi] (T's range) is an error, as it is for encoding/json.
func DecodeInts[T ~int | ~int64 | ~int32](data []byte, lo, hi int64) ([]T, error) {
	if len(data)%8 != 0 {
		return nil, ErrInts
	}
	out := make([]T, len(data)/8)
	for i := range out {
		n := int64(binary.LittleEndian.Uint64(data[8*i:]))
		if n < lo || n > hi {
			return nil, fmt.Errorf("abi: ints value: %d does not fit in %T", n, out[0])
		}
		out[i] = T(n)
	}
	return out, nil
}

// AppendIntsJSON appends the JSON array of the CodecInts bytes data.
func AppendIntsJSON(dst, data []byte) ([]byte, error) {
	if len(data)%8 != 0 {
		return dst, ErrInts
	}
	dst = append(dst, '[')
	for i := 0; i < len(data); i += 8 {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, int64(binary.LittleEndian.Uint64(data[i:])), 10)
	}
	return append(dst, ']'), nil
}

// MaxIntsJSON is the most bytes the JSON of n bytes of CodecInts takes
// (20 characters a number, a comma, the brackets).
// A size too large (or negative: a peer's lie) to bound is math.MaxInt64.
func MaxIntsJSON(n int64) int64 {
	if n < 0 || n > (math.MaxInt64-2)/21*8 {
		return math.MaxInt64
	}
	return 2 + n/8*21
}

// ToJSON returns v as a CodecJSON value if it is a CodecInts or CodecCBOR
// one, else v: what a client, and a guest whose module does not speak the
// codec, get. A CBOR value without a JSON form (a NaN, a malformed item) is
// an error wrapping ErrCBOR.
func (v Value) ToJSON() (Value, error) {
	switch v.Codec {
	case CodecInts:
		data, err := AppendIntsJSON(make([]byte, 0, 2+len(v.Data)+len(v.Data)/8), v.Data)
		if err != nil {
			return Value{}, err
		}
		return Value{Codec: CodecJSON, Data: data}, nil
	case CodecCBOR:
		data, err := CBORToJSON(make([]byte, 0, 16+2*len(v.Data)), v.Data)
		if err != nil {
			return Value{}, err
		}
		return Value{Codec: CodecJSON, Data: data}, nil
	}
	return v, nil
}

// ForGuest returns v as the guests of a module described by d read it:
// converted to JSON if they do not speak its codec.
func (d *Description) ForGuest(v Value) (Value, error) {
	if d.Speaks(v.Codec) {
		return v, nil
	}
	return v.ToJSON()
}

// IntsJSONWriter converts a CodecInts value that arrives in pieces (a
// stream's chunks, cut anywhere) to its JSON text: Write each piece, then
// Close for the closing bracket.
type IntsJSONWriter struct {
	out     func([]byte) error
	partial []byte // the bytes of an integer cut by a piece's end
	started bool
	emitted bool // an integer was written (the next needs a comma)
}

// NewIntsJSONWriter returns a converter that hands each piece of JSON to
// out.
func NewIntsJSONWriter(out func([]byte) error) *IntsJSONWriter { return &IntsJSONWriter{out: out} }

// Write converts p, the next bytes of the value.
func (w *IntsJSONWriter) Write(p []byte) error {
	buf := make([]byte, 0, 1+len(p)+len(p)/8*2+24)
	if !w.started {
		buf, w.started = append(buf, '['), true
	}
	emit := func(n []byte) {
		if w.emitted {
			buf = append(buf, ',')
		}
		w.emitted = true
		buf = strconv.AppendInt(buf, int64(binary.LittleEndian.Uint64(n)), 10)
	}
	if len(w.partial) > 0 {
		k := min(8-len(w.partial), len(p))
		w.partial, p = append(w.partial, p[:k]...), p[k:]
		if len(w.partial) < 8 {
			return w.out(buf)
		}
		emit(w.partial)
		w.partial = w.partial[:0]
	}
	for len(p) >= 8 {
		emit(p[:8])
		p = p[8:]
	}
	w.partial = append(w.partial, p...)
	return w.out(buf)
}

// Close ends the array; an integer left cut is ErrInts.
func (w *IntsJSONWriter) Close() error {
	if len(w.partial) > 0 {
		return ErrInts
	}
	if !w.started {
		return w.out([]byte("[]"))
	}
	return w.out([]byte("]"))
}
