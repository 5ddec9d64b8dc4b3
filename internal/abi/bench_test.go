package abi

import "testing"

// BenchmarkInvocation measures what the host pays to send a call with three
// small arguments and what the guest pays to read it.
func BenchmarkInvocation(b *testing.B) {
	inv := Invocation{
		Kind: KindCall, Task: testTask, Attempt: 1, Owner: "10.0.0.1:7000", Function: "square",
		Args: []Value{
			{Codec: CodecJSON, Data: []byte(`42`)},
			{Codec: CodecJSON, Data: []byte(`"hello"`)},
			{Codec: CodecRaw, Data: []byte("0123456789abcdef")},
		},
	}
	benchMessage(b, &inv, func() message { return new(Invocation) })
}

// BenchmarkGetReply1KiB measures a GetReply carrying one 1 KiB value.
func BenchmarkGetReply1KiB(b *testing.B) {
	rep := GetReply{Values: []Value{{Codec: CodecRaw, Data: kib(1)}}}
	benchMessage(b, &rep, func() message { return new(GetReply) })
}

func benchMessage(b *testing.B, m message, fresh func() message) {
	enc := m.Encode(nil)
	b.Run("Encode", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = m.Encode(buf[:0])
		}
	})
	b.Run("Decode", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		b.ReportAllocs()
		out := fresh()
		for b.Loop() {
			if err := out.Decode(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
	// EncodeDecode is one message's whole trip: a fresh buffer, as the SDK
	// and the host do (Encode(nil)), and a fresh message to decode into.
	b.Run("EncodeDecode", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		b.ReportAllocs()
		for b.Loop() {
			out := fresh()
			if err := out.Decode(m.Encode(nil)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
