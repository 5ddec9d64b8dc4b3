package abi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/rayhost/rayhost/internal/ids"
)

// ErrMalformed is returned when bytes do not decode as the expected message.
var ErrMalformed = errors.New("abi: malformed message")

// The encoding is deliberately plain: unsigned varints for lengths, counts and
// small numbers, fixed-size IDs, little-endian float64, and byte strings as a
// length followed by the bytes. Decoders never trust a count: every element
// needs at least one byte, so a count larger than what remains is rejected
// before anything is allocated.

// Encoder appends a message to a byte slice.
type Encoder struct{ B []byte }

func (e *Encoder) Uvarint(v uint64)    { e.B = binary.AppendUvarint(e.B, v) }
func (e *Encoder) Varint(v int64)      { e.B = binary.AppendVarint(e.B, v) }
func (e *Encoder) Byte(v byte)         { e.B = append(e.B, v) }
func (e *Encoder) Raw(v []byte)        { e.B = append(e.B, v...) }
func (e *Encoder) Bytes(v []byte)      { e.Uvarint(uint64(len(v))); e.B = append(e.B, v...) }
func (e *Encoder) String(v string)     { e.Uvarint(uint64(len(v))); e.B = append(e.B, v...) }
func (e *Encoder) Float(v float64)     { e.B = binary.LittleEndian.AppendUint64(e.B, math.Float64bits(v)) }
func (e *Encoder) Value(v Value)       { e.Byte(byte(v.Codec)); e.Bytes(v.Data) }
func (e *Encoder) Ref(r Ref)           { e.Raw(r.ID[:]); e.String(r.Owner) }
func (e *Encoder) TaskID(t ids.TaskID) { e.Raw(t[:]) }

// Bool is a byte: 1 for true, 0 for false.
func (e *Encoder) Bool(v bool) {
	if v {
		e.Byte(1)
	} else {
		e.Byte(0)
	}
}

// Decoder reads a message. The first error sticks; check Err at the end.
// Byte slices it returns alias the input.
type Decoder struct {
	b   []byte
	err error
}

// NewDecoder returns a Decoder over b.
func NewDecoder(b []byte) *Decoder { return &Decoder{b: b} }

// Fail makes the decoding fail with ErrMalformed (bad what), for checks a
// message's decoder makes beyond the fields' own.
func (d *Decoder) Fail(what string) { d.fail(what) }

func (d *Decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", ErrMalformed, what)
	}
	d.b = nil
}

// Err returns the first decoding error.
func (d *Decoder) Err() error { return d.err }

// Done returns the first error, or an error if bytes are left over.
// Len is the number of bytes not read yet.
func (d *Decoder) Len() int { return len(d.b) }

func (d *Decoder) Done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b))
	}
	return d.err
}

func (d *Decoder) Uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *Decoder) Varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// Uint32 reads a uvarint that must fit 32 bits.
func (d *Decoder) Uint32() uint32 {
	v := d.Uvarint()
	if v > math.MaxUint32 {
		d.fail("uint32")
		return 0
	}
	return uint32(v)
}

// Count reads a uvarint element count; each element takes at least min bytes.
func (d *Decoder) Count(min int) int {
	v := d.Uvarint()
	if min < 1 {
		min = 1
	}
	if v > uint64(len(d.b)/min) {
		d.fail("count")
		return 0
	}
	return int(v)
}

func (d *Decoder) Byte() byte {
	if len(d.b) < 1 {
		d.fail("byte")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *Decoder) Raw(n int) []byte {
	if n < 0 || len(d.b) < n {
		d.fail("bytes")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *Decoder) Bytes() []byte {
	n := d.Uvarint()
	if n > uint64(len(d.b)) {
		d.fail("length")
		return nil
	}
	return d.Raw(int(n))
}

func (d *Decoder) String() string { return string(d.Bytes()) }

func (d *Decoder) Float() float64 {
	b := d.Raw(8)
	if b == nil {
		return 0
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(b))
}

func (d *Decoder) TaskID() (t ids.TaskID) {
	copy(t[:], d.Raw(ids.TaskIDSize))
	return t
}

func (d *Decoder) ObjectID() (o ids.ObjectID) {
	copy(o[:], d.Raw(ids.ObjectIDSize))
	if d.err == nil && o.Index() == 0 {
		d.fail("object id")
	}
	return o
}

func (d *Decoder) Value() Value {
	c := Codec(d.Byte())
	if d.err == nil && !c.Valid() {
		d.fail("codec")
	}
	data := d.Bytes()
	if d.err == nil && c == CodecInts && len(data)%8 != 0 {
		d.fail("ints value")
	}
	return Value{Codec: c, Data: data}
}

func (d *Decoder) Ref() Ref { return Ref{ID: d.ObjectID(), Owner: d.String()} }

// Rest returns the bytes not read yet and consumes them.
func (d *Decoder) Rest() []byte {
	r := d.b
	d.b = nil
	return r
}
