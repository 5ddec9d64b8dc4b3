// This file holds the tests of counts in encodings: a huge count is
// rejected before anything is allocated for it, and counts at their bounds
// are accepted or rejected as the ABI says.

package abi

import (
	"fmt"
	"math"
	"runtime"
	"testing"

	"github.com/rayhost/rayhost/internal/ids"
)

// A count far larger than the input could hold must be rejected before the
// decoder allocates anything for it.
func TestHugeCountsRejectedWithoutAllocating(t *testing.T) {
	counts := []uint64{1 << 20, 1 << 40, math.MaxInt64, math.MaxUint64}
	type hugeCase struct {
		name  string
		fresh func() message
		build func(n uint64) []byte
	}
	cases := []hugeCase{
		{"Invocation args", func() message { return new(Invocation) }, func(n uint64) []byte {
			return enc(func(e *Encoder) {
				invocationHeader(e)
				e.Uvarint(n)
				e.Value(Value{Codec: CodecRaw})
				invocationActor(e)
			})
		}},
		{"SubmitRequest custom", func() message { return new(SubmitRequest) }, func(n uint64) []byte {
			return submitWith(func(e *Encoder) { e.Uvarint(n); e.String("x"); e.Float(1) }, noArgs)
		}},
		{"SubmitRequest args", func() message { return new(SubmitRequest) }, func(n uint64) []byte {
			return submitWith(noCustom, func(e *Encoder) { e.Uvarint(n); e.Byte(0); e.Value(Value{}) })
		}},
		{"SubmitRequest retry-on", func() message { return new(SubmitRequest) }, func(n uint64) []byte {
			return submitRetries(func(e *Encoder) {
				e.Varint(1)
				e.Byte(byte(RetryListed))
				e.Uvarint(n)
				e.String("x")
				e.Byte(0)
				e.Uvarint(0)
			})
		}},
		{"SubmitRequest mounts", func() message { return new(SubmitRequest) }, func(n uint64) []byte {
			return submitGrants(func(e *Encoder) { e.Uvarint(n); mount(e, "/h", "/g", 1); e.Uvarint(0) })
		}},
		{"SubmitRequest env", func() message { return new(SubmitRequest) }, func(n uint64) []byte {
			return submitGrants(func(e *Encoder) { e.Uvarint(0); e.Uvarint(n); e.String("K"); e.String("v") })
		}},
		{"SubmitRequest mount host length", func() message { return new(SubmitRequest) }, func(n uint64) []byte {
			return submitGrants(func(e *Encoder) { e.Uvarint(1); e.Uvarint(n); e.Raw([]byte("abc")) })
		}},
		{"SubmitRequest env value length", func() message { return new(SubmitRequest) }, func(n uint64) []byte {
			return submitGrants(func(e *Encoder) { e.Uvarint(0); e.Uvarint(1); e.String("K"); e.Uvarint(n); e.Raw([]byte("abc")) })
		}},
		{"GetRequest refs", func() message { return new(GetRequest) }, func(n uint64) []byte {
			return enc(func(e *Encoder) { e.Varint(-1); e.Uvarint(n); e.Ref(Ref{ID: testRet0}) })
		}},
		{"GetReply values", func() message { return new(GetReply) }, func(n uint64) []byte {
			return enc(func(e *Encoder) { e.Uvarint(n); e.Value(Value{Codec: CodecRaw, Data: []byte("x")}) })
		}},
		{"Result values", func() message { return new(Result) }, func(n uint64) []byte {
			return enc(func(e *Encoder) { e.Uvarint(n) })
		}},
		{"WaitRequest refs", func() message { return new(WaitRequest) }, func(n uint64) []byte {
			return enc(func(e *Encoder) { e.Varint(-1); e.Uvarint(1); e.Uvarint(n); e.Ref(Ref{ID: testRet0}) })
		}},
		{"WaitReply ready", func() message { return new(WaitReply) }, func(n uint64) []byte {
			return enc(func(e *Encoder) { e.Uvarint(n); e.Uvarint(0); e.Uvarint(1) })
		}},
		{"Invocation value length", func() message { return new(Invocation) }, func(n uint64) []byte {
			return enc(func(e *Encoder) {
				invocationHeader(e)
				e.Uvarint(1)
				e.Byte(byte(CodecRaw))
				e.Uvarint(n)
				e.Raw([]byte("abc"))
				invocationActor(e)
			})
		}},
		{"SubmitRequest name length", func() message { return new(SubmitRequest) }, func(n uint64) []byte {
			return submitActor(func(e *Encoder) {
				e.Byte(byte(KindActorCreate))
				e.TaskID(ids.TaskID{})
				e.Varint(0)
				e.Varint(0)
				e.Uvarint(n)
				e.Raw([]byte("abc"))
			})
		}},
		{"SubmitRequest namespace length", func() message { return new(SubmitRequest) }, func(n uint64) []byte {
			return submitActor(func(e *Encoder) {
				e.Byte(byte(KindActorCreate))
				e.TaskID(ids.TaskID{})
				e.Varint(0)
				e.Varint(0)
				e.String("name")
				e.Uvarint(n)
				e.Raw([]byte("abc"))
			})
		}},
		{"GetActorRequest name length", func() message { return new(GetActorRequest) }, func(n uint64) []byte {
			return enc(func(e *Encoder) { e.Uvarint(n); e.Raw([]byte("abc")) })
		}},
		{"GetActorRequest namespace length", func() message { return new(GetActorRequest) }, func(n uint64) []byte {
			return enc(func(e *Encoder) { e.String("counter"); e.Uvarint(n); e.Raw([]byte("abc")) })
		}},
		{"ActorInfo owner length", func() message { return new(ActorInfo) }, func(n uint64) []byte {
			return enc(func(e *Encoder) { e.TaskID(testTask2); e.Uvarint(n); e.Raw([]byte("abc")) })
		}},
		{"ActorInfo class length", func() message { return new(ActorInfo) }, func(n uint64) []byte {
			return enc(func(e *Encoder) { e.TaskID(testTask2); e.String("h:1"); e.Uvarint(n); e.Raw([]byte("abc")) })
		}},
		{"GetRequest owner length", func() message { return new(GetRequest) }, func(n uint64) []byte {
			return enc(func(e *Encoder) { e.Varint(-1); e.Uvarint(1); e.Raw(testRet0[:]); e.Uvarint(n); e.Raw([]byte("abc")) })
		}},
	}
	for _, c := range cases {
		for _, n := range counts {
			t.Run(fmt.Sprintf("%s/%d", c.name, n), func(t *testing.T) {
				in := c.build(n)
				m := c.fresh()
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				const runs = 10
				for range runs {
					wantMalformed(t, m, in)
				}
				runtime.ReadMemStats(&after)
				// A few small error values per run are fine; anything that
				// scales with the claimed count is not.
				if perRun := (after.TotalAlloc - before.TotalAlloc) / runs; perRun > 4<<10 {
					t.Fatalf("decoding a %d-byte input claiming %d elements allocated %d bytes per run", len(in), n, perRun)
				}
			})
		}
	}
}

// A count that needs just one byte more than the input has is rejected by
// the count check ("bad count"); the same count with enough bytes is
// accepted. This pins the minimum element sizes the decoders assume.
func TestCountBoundaries(t *testing.T) {
	cases := []struct {
		name  string
		fresh func() message
		// build encodes n elements of the smallest possible size, and claims
		// n+extra elements.
		build func(n, extra int) []byte
		// over is the smallest extra the count check must reject: 1, unless
		// the fixed fields after the list could hold another element.
		over int
	}{
		{"GetReply", func() message { return new(GetReply) }, func(n, extra int) []byte {
			return enc(func(e *Encoder) {
				e.Uvarint(uint64(n + extra))
				for range n {
					e.Value(Value{})
				}
			})
		}, 1},
		{"WaitReply", func() message { return new(WaitReply) }, func(n, extra int) []byte {
			return enc(func(e *Encoder) {
				e.Uvarint(uint64(n + extra))
				for range n {
					e.Uvarint(0)
				}
			})
		}, 1},
		{"GetRequest", func() message { return new(GetRequest) }, func(n, extra int) []byte {
			return enc(func(e *Encoder) {
				e.Varint(0)
				e.Uvarint(uint64(n + extra))
				for i := range n {
					e.Ref(Ref{ID: testTask.Return(i)})
				}
			})
		}, 1},
		// The 31 bytes after the custom list (5 of retry fields, 2 of limits,
		// 2 of grants, 21 of actor fields, 1 of args count) could hold three
		// more 9-byte entries, so claims of n+1 to n+3 pass the count check
		// and fail later; n+4 cannot.
		{"SubmitRequest custom", func() message { return new(SubmitRequest) }, func(n, extra int) []byte {
			return submitWith(func(e *Encoder) {
				e.Uvarint(uint64(n + extra))
				for range n {
					e.String("")
					e.Float(1)
				}
			}, noArgs)
		}, 4},
		{"SubmitRequest args", func() message { return new(SubmitRequest) }, func(n, extra int) []byte {
			return submitWith(noCustom, func(e *Encoder) {
				e.Uvarint(uint64(n + extra))
				for range n {
					e.Byte(0)
					e.Value(Value{})
				}
			})
		}, 1},
		// The 23 bytes after the mount list (1 of env count, 21 of actor
		// fields, 1 of args count) could hold seven more 3-byte mounts.
		{"SubmitRequest mounts", func() message { return new(SubmitRequest) }, func(n, extra int) []byte {
			return submitGrants(func(e *Encoder) {
				e.Uvarint(uint64(n + extra))
				for range n {
					mount(e, "", "", 0)
				}
				e.Uvarint(0) // env
			})
		}, 8},
		// The 22 bytes after the env list (21 of actor fields, 1 of args
		// count) could hold eleven more 2-byte variables.
		{"SubmitRequest env", func() message { return new(SubmitRequest) }, func(n, extra int) []byte {
			return submitGrants(func(e *Encoder) {
				e.Uvarint(0) // mounts
				e.Uvarint(uint64(n + extra))
				for range n {
					e.String("")
					e.String("")
				}
			})
		}, 12},
		// The 16-byte actor ID after the argument list of an Invocation could
		// hold eight more 2-byte values.
		{"Invocation args", func() message { return new(Invocation) }, func(n, extra int) []byte {
			return enc(func(e *Encoder) {
				invocationHeader(e)
				e.Uvarint(uint64(n + extra))
				for range n {
					e.Value(Value{})
				}
				invocationActor(e)
			})
		}, 9},
	}
	for _, c := range cases {
		for _, n := range []int{0, 1, 5} {
			t.Run(fmt.Sprintf("%s/%d", c.name, n), func(t *testing.T) {
				if err := decodeSafely(t, c.fresh(), c.build(n, 0)); err != nil {
					t.Fatalf("%d minimal elements: %v", n, err)
				}
				for extra := 1; extra <= c.over; extra++ {
					wantMalformed(t, c.fresh(), c.build(n, extra))
				}
				in := c.build(n, c.over)
				if err := decodeSafely(t, c.fresh(), in); err == nil || err.Error() != "abi: malformed message: bad count" {
					t.Fatalf("claiming %d elements with %d in %x: %v; want the count check to reject it", n+c.over, n, in, err)
				}
			})
		}
	}
}
