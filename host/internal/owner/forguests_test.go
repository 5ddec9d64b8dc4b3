package owner

import (
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
)

// forGuests gives a module that does not speak a codec its values as JSON
// (a module built before the codec existed), leaves the others as they
// are, and never changes the caller's slice.
func TestForGuests(t *testing.T) {
	ints := abi.Value{Codec: abi.CodecInts, Data: abi.AppendInts(nil, []int{7, -8})}
	raw := abi.Value{Codec: abi.CodecRaw, Data: []byte("x")}
	vals := []abi.Value{raw, ints}
	old := &module{Desc: abi.Description{ABI: 1}}
	fresh := &module{Desc: abi.Description{ABI: 1, Codecs: []string{"ints"}}}
	got := forGuests(old, vals)
	if got[1].Codec != abi.CodecJSON || string(got[1].Data) != "[7,-8]" || got[0].Codec != abi.CodecRaw {
		t.Fatalf("for an old module: %v", got)
	}
	if vals[1].Codec != abi.CodecInts {
		t.Fatal("forGuests changed the caller's slice")
	}
	if got := forGuests(fresh, vals); got[1].Codec != abi.CodecInts {
		t.Fatalf("for a module that speaks ints: %v", got)
	}
	if got := forGuests(nil, vals); got[1].Codec != abi.CodecJSON {
		t.Fatalf("for no module: %v", got)
	}
}
