package objdir

import (
	"fmt"

	"github.com/rayhost/rayhost/internal/abi"
)

// CodecHeld marks, inside a host only, a value whose bytes other hosts
// hold; its Data is an encoded Held. Seal records the holders instead of
// bytes. It never reaches a guest or a client.
//
// It is the same number, and Held the same encoding, as package host's
// codecHeld and heldValue, which the peer protocol carries.
const CodecHeld abi.Codec = 0x80

// Held describes a value by where it is rather than by its bytes.
type Held struct {
	Codec   abi.Codec // the value's own codec (json or raw)
	Size    int64
	Holders []string // API addresses of hosts that hold the bytes
}

// Encode appends h to b.
func (h Held) Encode(b []byte) []byte {
	e := abi.Encoder{B: b}
	e.Byte(byte(h.Codec))
	e.Varint(h.Size)
	e.Uvarint(uint64(len(h.Holders)))
	for _, s := range h.Holders {
		e.String(s)
	}
	return e.B
}

// Value is h as a value of codec CodecHeld.
func (h Held) Value() abi.Value { return abi.Value{Codec: CodecHeld, Data: h.Encode(nil)} }

// DecodeHeld decodes the Data of a CodecHeld value.
func DecodeHeld(b []byte) (Held, error) {
	d := abi.NewDecoder(b)
	var v Held
	v.Codec = abi.Codec(d.Byte())
	v.Size = d.Varint()
	n := d.Count(1)
	for range n {
		v.Holders = append(v.Holders, d.String())
	}
	if err := d.Done(); err != nil {
		return v, err
	}
	if !v.Codec.Valid() || v.Codec == abi.CodecError {
		return v, fmt.Errorf("held value: bad codec %d", v.Codec)
	}
	return v, nil
}

// CodecNamed is the codec whose String is s.
func CodecNamed(s string) (abi.Codec, bool) {
	for c := abi.CodecJSON; c <= abi.CodecError; c++ {
		if c.String() == s {
			return c, true
		}
	}
	return 0, false
}
