package objdir

import (
	"github.com/rayhost/rayhost/host/internal/peerwire"
	"github.com/rayhost/rayhost/internal/abi"
)

// CodecHeld marks, inside a host only, a value whose bytes other hosts
// hold; its Data is an encoded Held. Seal records the holders instead of
// bytes. It never reaches a guest or a client. The codec and the encoding
// are the peer protocol's (abi.CodecHeld, peerwire.Held).
const CodecHeld = abi.CodecHeld

// Held describes a value by where it is rather than by its bytes.
type Held = peerwire.Held

// DecodeHeld decodes the Data of a CodecHeld value.
func DecodeHeld(b []byte) (Held, error) { return peerwire.DecodeHeld(b) }

// CodecNamed is the codec whose String is s.
func CodecNamed(s string) (abi.Codec, bool) {
	for c := abi.CodecJSON; c.Valid(); c++ {
		if c.String() == s {
			return c, true
		}
	}
	return 0, false
}
