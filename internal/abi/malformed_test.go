package abi

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"testing"

	"github.com/rayhost/rayhost/internal/ids"
)

// decodeSafely decodes b into m and turns a panic into a test failure that
// names the input.
func decodeSafely(t *testing.T, m message, b []byte) (err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("%T.Decode(%x) panicked: %v", m, b, r)
		}
	}()
	return m.Decode(b)
}

func wantMalformed(t *testing.T, m message, b []byte) {
	t.Helper()
	err := decodeSafely(t, m, b)
	if err == nil {
		t.Fatalf("%T.Decode(%x) succeeded (%+v); want an error", m, b, m)
	}
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("%T.Decode(%x) = %v; want an error wrapping ErrMalformed", m, b, err)
	}
}

// Every message is self-delimiting, so every proper prefix of a valid
// encoding must be rejected.
func TestTruncatedAtEveryOffset(t *testing.T) {
	for _, c := range roundTripCases() {
		t.Run(c.name, func(t *testing.T) {
			enc := c.msg.Encode(nil)
			for i := range len(enc) {
				// Clip the capacity so a decoder that reslices past the end
				// of its input panics instead of reading the rest.
				wantMalformed(t, c.fresh(), enc[:i:i])
			}
		})
	}
}

func TestTrailingBytesRejected(t *testing.T) {
	for _, c := range roundTripCases() {
		for _, extra := range [][]byte{{0}, {0xff}, []byte("trailing garbage")} {
			t.Run(fmt.Sprintf("%s/+%x", c.name, extra), func(t *testing.T) {
				enc := append(c.msg.Encode(nil), extra...)
				err := decodeSafely(t, c.fresh(), enc)
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("Decode with %d trailing bytes = %v; want ErrMalformed", len(extra), err)
				}
			})
		}
	}
}

func TestEmptyInputRejected(t *testing.T) {
	for _, c := range roundTripCases() {
		t.Run(c.name, func(t *testing.T) {
			wantMalformed(t, c.fresh(), nil)
			wantMalformed(t, c.fresh(), []byte{})
		})
	}
}

// enc builds raw (possibly invalid) messages for the malformed cases.
func enc(f func(e *Encoder)) []byte {
	var e Encoder
	f(&e)
	return e.B
}

func invocationHeader(e *Encoder) {
	e.Byte(byte(KindCall))
	e.TaskID(testTask)
	e.Uvarint(0)     // attempt
	e.String("h:1")  // owner
	e.String("func") // function
}

// submitWith builds a SubmitRequest whose custom-resource list and argument
// list are written by custom and args (each writes its count and entries);
// every other field is taken from Encode of a valid request, so the builder
// keeps working when fields are added between the two lists. It relies only
// on the custom list following the five leading fields and the argument list
// coming last.
func submitWith(custom, args func(e *Encoder)) []byte {
	base := (&SubmitRequest{Task: testTask, Function: "f", NumReturns: 1, Resources: Resources{CPUs: -1}}).Encode(nil)
	off := submitCustomOffset()
	if base[off] != 0 || base[len(base)-1] != 0 {
		panic("submitWith: unexpected SubmitRequest layout")
	}
	var e Encoder
	e.Raw(base[:off])
	custom(&e)
	e.Raw(base[off+1 : len(base)-1])
	args(&e)
	return e.B
}

// submitCustomOffset is where the custom-resource count of a SubmitRequest
// with Task testTask, Function "f" and NumReturns 1 starts.
func submitCustomOffset() int {
	var e Encoder
	e.TaskID(testTask)
	e.String("f")
	e.Uvarint(1)
	e.Float(-1)
	e.Float(0)
	return len(e.B)
}

// submitNumReturns is a valid SubmitRequest with its NumReturns replaced by
// n.
func submitNumReturns(n uint64) []byte {
	base := (&SubmitRequest{Task: testTask, Function: "f", NumReturns: 1, Resources: Resources{CPUs: -1}}).Encode(nil)
	var e Encoder
	e.TaskID(testTask)
	e.String("f")
	at := len(e.B)
	e.Uvarint(n)
	e.Raw(base[at+1:])
	return e.B
}

// submitMiddle builds a SubmitRequest without custom resources or arguments
// whose fields between the two lists (max retries, retry mode, retry-on
// list, flags, backpressure) middle writes.
func submitMiddle(middle func(e *Encoder)) []byte {
	base := (&SubmitRequest{Task: testTask, Function: "f", NumReturns: 1, Resources: Resources{CPUs: -1}}).Encode(nil)
	var e Encoder
	e.Raw(base[:submitCustomOffset()])
	noCustom(&e)
	middle(&e)
	noArgs(&e)
	return e.B
}

func noCustom(e *Encoder) { e.Uvarint(0) }
func noArgs(e *Encoder)   { e.Uvarint(0) }

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
			return enc(func(e *Encoder) { invocationHeader(e); e.Uvarint(n); e.Value(Value{Codec: CodecRaw}) })
		}},
		{"SubmitRequest custom", func() message { return new(SubmitRequest) }, func(n uint64) []byte {
			return submitWith(func(e *Encoder) { e.Uvarint(n); e.String("x"); e.Float(1) }, noArgs)
		}},
		{"SubmitRequest args", func() message { return new(SubmitRequest) }, func(n uint64) []byte {
			return submitWith(noCustom, func(e *Encoder) { e.Uvarint(n); e.Byte(0); e.Value(Value{}) })
		}},
		{"SubmitRequest retry-on", func() message { return new(SubmitRequest) }, func(n uint64) []byte {
			return submitMiddle(func(e *Encoder) {
				e.Varint(1)
				e.Byte(byte(RetryListed))
				e.Uvarint(n)
				e.String("x")
				e.Byte(0)
				e.Uvarint(0)
			})
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
			})
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

// A count that needs just one byte more than the input has is rejected; the
// same count with enough bytes is accepted. This pins the minimum element
// sizes the decoders assume.
func TestCountBoundaries(t *testing.T) {
	cases := []struct {
		name  string
		fresh func() message
		// build encodes n elements of the smallest possible size, and claims
		// n+extra elements.
		build func(n, extra int) []byte
	}{
		{"GetReply", func() message { return new(GetReply) }, func(n, extra int) []byte {
			return enc(func(e *Encoder) {
				e.Uvarint(uint64(n + extra))
				for range n {
					e.Value(Value{})
				}
			})
		}},
		{"WaitReply", func() message { return new(WaitReply) }, func(n, extra int) []byte {
			return enc(func(e *Encoder) {
				e.Uvarint(uint64(n + extra))
				for range n {
					e.Uvarint(0)
				}
			})
		}},
		{"GetRequest", func() message { return new(GetRequest) }, func(n, extra int) []byte {
			return enc(func(e *Encoder) {
				e.Varint(0)
				e.Uvarint(uint64(n + extra))
				for i := range n {
					e.Ref(Ref{ID: testTask.Return(i)})
				}
			})
		}},
		{"SubmitRequest custom", func() message { return new(SubmitRequest) }, func(n, extra int) []byte {
			return submitWith(func(e *Encoder) {
				e.Uvarint(uint64(n + extra))
				for range n {
					e.String("")
					e.Float(1)
				}
			}, noArgs)
		}},
		{"SubmitRequest args", func() message { return new(SubmitRequest) }, func(n, extra int) []byte {
			return submitWith(noCustom, func(e *Encoder) {
				e.Uvarint(uint64(n + extra))
				for range n {
					e.Byte(0)
					e.Value(Value{})
				}
			})
		}},
	}
	for _, c := range cases {
		for _, n := range []int{0, 1, 5} {
			t.Run(fmt.Sprintf("%s/%d", c.name, n), func(t *testing.T) {
				if err := decodeSafely(t, c.fresh(), c.build(n, 0)); err != nil {
					t.Fatalf("%d minimal elements: %v", n, err)
				}
				wantMalformed(t, c.fresh(), c.build(n, 1))
			})
		}
	}
}

func TestMalformed(t *testing.T) {
	newInv := func() message { return new(Invocation) }
	newSub := func() message { return new(SubmitRequest) }
	newGet := func() message { return new(GetRequest) }
	newGetRep := func() message { return new(GetReply) }
	newPut := func() message { return new(PutRequest) }
	newWait := func() message { return new(WaitRequest) }
	newWaitRep := func() message { return new(WaitReply) }
	newSleep := func() message { return new(SleepRequest) }

	// Uvarints that binary.Uvarint rejects.
	overflow10 := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}
	tooLong := []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}

	cases := []struct {
		name  string
		fresh func() message
		in    []byte
	}{
		// Invalid codecs.
		{"Invocation codec 3", newInv, enc(func(e *Encoder) { invocationHeader(e); e.Uvarint(1); e.Byte(3); e.Bytes(nil) })},
		{"Invocation codec 255", newInv, enc(func(e *Encoder) { invocationHeader(e); e.Uvarint(1); e.Byte(255); e.Bytes([]byte("x")) })},
		{"GetReply codec 3", newGetRep, enc(func(e *Encoder) { e.Uvarint(1); e.Byte(3); e.Bytes([]byte("42")) })},
		{"GetReply second value codec 200", newGetRep, enc(func(e *Encoder) {
			e.Uvarint(2)
			e.Value(Value{Codec: CodecRaw})
			e.Byte(200)
			e.Bytes(nil)
		})},
		{"PutRequest codec 3", newPut, enc(func(e *Encoder) { e.Raw(testPut0[:]); e.Byte(3); e.Bytes(nil) })},
		{"SubmitRequest value arg codec 9", newSub, submitWith(noCustom, func(e *Encoder) {
			e.Uvarint(1)
			e.Byte(0)
			e.Byte(9)
			e.Bytes(nil)
		})},

		// Object IDs with index 0.
		{"GetRequest zero-index ref", newGet, (&GetRequest{TimeoutNs: -1, Refs: []Ref{{ID: zeroIndexID()}}}).Encode(nil)},
		{"GetRequest all-zero ref", newGet, (&GetRequest{TimeoutNs: -1, Refs: []Ref{{ID: testRet0}, {}}}).Encode(nil)},
		{"WaitRequest zero-index ref", newWait, (&WaitRequest{TimeoutNs: 0, NumReturns: 1, Refs: []Ref{{ID: zeroIndexID(), Owner: "o"}}}).Encode(nil)},
		{"PutRequest zero-index id", newPut, (&PutRequest{ID: zeroIndexID(), Value: Value{Codec: CodecRaw}}).Encode(nil)},
		{"SubmitRequest zero-index ref arg", newSub, (&SubmitRequest{Function: "f", Args: []Arg{{IsRef: true, Ref: Ref{ID: zeroIndexID()}}}}).Encode(nil)},

		// PutRequest whose ID is not a put ID.
		{"PutRequest return id", newPut, (&PutRequest{ID: testRet0, Value: Value{Codec: CodecRaw}}).Encode(nil)},
		{"PutRequest return id max index", newPut, (&PutRequest{ID: testTask.Return(math.MaxInt32 - 1), Value: Value{Codec: CodecJSON, Data: []byte("1")}}).Encode(nil)},

		// Negative sleeps.
		{"SleepRequest -1", newSleep, (&SleepRequest{Ns: -1}).Encode(nil)},
		{"SleepRequest min int64", newSleep, (&SleepRequest{Ns: math.MinInt64}).Encode(nil)},

		// Invalid invocation kinds.
		{"Invocation kind 0", newInv, (&Invocation{Kind: 0, Function: "f"}).Encode(nil)},
		{"Invocation kind 4", newInv, (&Invocation{Kind: 4, Function: "f"}).Encode(nil)},
		{"Invocation kind 255", newInv, (&Invocation{Kind: 255}).Encode(nil)},

		// Invalid argument kind in a SubmitRequest.
		{"SubmitRequest arg kind 2", newSub, submitWith(noCustom, func(e *Encoder) {
			e.Uvarint(1)
			e.Byte(2)
			e.Value(Value{})
		})},

		// Numbers that do not fit 32 bits.
		{"Invocation attempt 2^32", newInv, enc(func(e *Encoder) {
			e.Byte(byte(KindCall))
			e.TaskID(testTask)
			e.Uvarint(1 << 32)
			e.String("")
			e.String("")
			e.Uvarint(0)
		})},
		{"SubmitRequest num returns 2^32", newSub, submitNumReturns(1 << 32)},
		{"SubmitRequest backpressure 2^32", newSub, submitMiddle(func(e *Encoder) {
			e.Varint(0) // max retries
			e.Byte(0)   // retry mode
			e.Uvarint(0)
			e.Byte(0) // flags
			e.Uvarint(1 << 32)
		})},

		// The retry and generator fields of a SubmitRequest.
		{"SubmitRequest max retries -2", newSub, (&SubmitRequest{Function: "f", MaxRetries: -2}).Encode(nil)},
		{"SubmitRequest max retries min int32", newSub, (&SubmitRequest{Function: "f", MaxRetries: math.MinInt32}).Encode(nil)},
		{"SubmitRequest max retries 2^30+1", newSub, (&SubmitRequest{Function: "f", MaxRetries: 1<<30 + 1}).Encode(nil)},
		{"SubmitRequest max retries max int32", newSub, (&SubmitRequest{Function: "f", MaxRetries: math.MaxInt32}).Encode(nil)},
		{"SubmitRequest max retries beyond int32", newSub, submitMiddle(func(e *Encoder) {
			e.Varint(1 << 40)
			e.Byte(0)
			e.Uvarint(0)
			e.Byte(0)
			e.Uvarint(0)
		})},
		{"SubmitRequest retry mode 3", newSub, (&SubmitRequest{Function: "f", Retry: 3}).Encode(nil)},
		{"SubmitRequest retry mode 255", newSub, (&SubmitRequest{Function: "f", Retry: 255, RetryOn: []string{"x"}}).Encode(nil)},
		{"SubmitRequest flags 4", newSub, submitMiddle(func(e *Encoder) {
			e.Varint(0)
			e.Byte(0)
			e.Uvarint(0)
			e.Byte(4)
			e.Uvarint(0)
		})},
		{"SubmitRequest flags 255", newSub, submitMiddle(func(e *Encoder) {
			e.Varint(0)
			e.Byte(0)
			e.Uvarint(0)
			e.Byte(255)
			e.Uvarint(0)
		})},
		{"SubmitRequest retry-on count beyond input", newSub, submitMiddle(func(e *Encoder) {
			e.Varint(3)
			e.Byte(byte(RetryListed))
			e.Uvarint(10)
			e.String("a")
			e.Byte(0)
			e.Uvarint(0)
		})},
		{"WaitRequest num returns 2^32", newWait, enc(func(e *Encoder) { e.Varint(0); e.Uvarint(1 << 32); e.Uvarint(0) })},
		{"WaitReply index 2^32", newWaitRep, enc(func(e *Encoder) { e.Uvarint(1); e.Uvarint(1 << 32) })},

		// NextReply and CancelRequest.
		{"NextReply 2", func() message { return new(NextReply) }, []byte{2}},
		{"NextReply two bytes", func() message { return new(NextReply) }, []byte{1, 1}},
		{"CancelRequest flags 4", func() message { return new(CancelRequest) }, append((&CancelRequest{Ref: Ref{ID: testRet0}}).Encode(nil)[:ids.ObjectIDSize+1], 4)},
		{"CancelRequest zero-index ref", func() message { return new(CancelRequest) }, (&CancelRequest{Ref: Ref{ID: zeroIndexID()}}).Encode(nil)},
		{"NextRequest index 2^32", func() message { return new(NextRequest) }, enc(func(e *Encoder) { e.TaskID(testTask); e.Uvarint(1 << 32); e.Varint(0) })},
		{"Value codec 3", func() message { return new(loneValue) }, []byte{3, 0}},

		// Varints that overflow or never end.
		{"SleepRequest overflowing varint", newSleep, overflow10},
		{"SleepRequest 11-byte varint", newSleep, tooLong},
		{"SleepRequest unterminated varint", newSleep, []byte{0x80, 0x80}},
		{"GetReply overflowing count", newGetRep, overflow10},
		{"WaitReply 11-byte count", newWaitRep, tooLong},
		{"GetRequest overflowing timeout", newGet, append(overflow10, 0)},

		// Lengths beyond the input.
		{"GetReply value length beyond input", newGetRep, enc(func(e *Encoder) { e.Uvarint(1); e.Byte(byte(CodecRaw)); e.Uvarint(5); e.Raw([]byte("ab")) })},
		{"Invocation owner length beyond input", newInv, enc(func(e *Encoder) {
			e.Byte(byte(KindCall))
			e.TaskID(testTask)
			e.Uvarint(0)
			e.Uvarint(100)
			e.Raw([]byte("short"))
		})},
		{"SubmitRequest short float", newSub, enc(func(e *Encoder) { e.TaskID(testTask); e.String("f"); e.Uvarint(1); e.Raw([]byte{1, 2, 3}) })},
		{"PutRequest short id", newPut, testPut0[:ids.ObjectIDSize-1]},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantMalformed(t, c.fresh(), c.in)
		})
	}
}

// Errors say what was wrong.
func TestMalformedErrorMessages(t *testing.T) {
	cases := []struct {
		name string
		m    message
		in   []byte
		want string
	}{
		{"trailing", new(SleepRequest), []byte{0, 1, 2}, "abi: malformed message: 2 trailing bytes"},
		{"codec", new(GetReply), []byte{1, 7, 0}, "abi: malformed message: bad codec"},
		{"count", new(GetReply), []byte{2, 0, 0}, "abi: malformed message: bad count"},
		{"kind", new(Invocation), (&Invocation{Kind: 9}).Encode(nil), "abi: malformed message: bad kind"},
		{"put id", new(PutRequest), (&PutRequest{ID: testRet0}).Encode(nil), "abi: malformed message: bad put id"},
		{"object id", new(PutRequest), (&PutRequest{ID: zeroIndexID()}).Encode(nil), "abi: malformed message: bad object id"},
		{"duration", new(SleepRequest), (&SleepRequest{Ns: -5}).Encode(nil), "abi: malformed message: bad duration"},
		{"max retries", new(SubmitRequest), (&SubmitRequest{MaxRetries: -7}).Encode(nil), "abi: malformed message: bad max retries"},
		{"retry mode", new(SubmitRequest), (&SubmitRequest{Retry: 9}).Encode(nil), "abi: malformed message: bad retry mode"},
		{"submit flags", new(SubmitRequest), submitMiddle(func(e *Encoder) { e.Varint(0); e.Byte(0); e.Uvarint(0); e.Byte(8); e.Uvarint(0) }), "abi: malformed message: bad flags"},
		{"cancel flags", new(CancelRequest), append((&CancelRequest{Ref: Ref{ID: testRet0}}).Encode(nil)[:ids.ObjectIDSize+1], 4), "abi: malformed message: bad flags"},
		{"first error sticks", new(Invocation), []byte{byte(KindCall), 1, 2}, "abi: malformed message: bad bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := decodeSafely(t, c.m, c.in)
			if err == nil || err.Error() != c.want {
				t.Fatalf("Decode(%x) = %v, want %q", c.in, err, c.want)
			}
		})
	}
}

// The builders above must produce valid requests when given valid parts;
// otherwise the malformed cases built with them would prove nothing.
func TestSubmitBuilders(t *testing.T) {
	want := SubmitRequest{Task: testTask, Function: "f", NumReturns: 1, Resources: Resources{CPUs: -1}}
	for name, b := range map[string][]byte{
		"submitWith":   submitWith(noCustom, noArgs),
		"submitMiddle": submitMiddle(func(e *Encoder) { e.Varint(0); e.Byte(0); e.Uvarint(0); e.Byte(0); e.Uvarint(0) }),
	} {
		var got SubmitRequest
		if err := decodeSafely(t, &got, b); err != nil || !equalMsg(&want, &got) {
			t.Errorf("%s: %+v, %v; want %+v", name, got, err, want)
		}
	}
	var got SubmitRequest
	if err := decodeSafely(t, &got, submitNumReturns(7)); err != nil || got.NumReturns != 7 {
		t.Errorf("submitNumReturns(7): %+v, %v", got, err)
	}
	full := submitMiddle(func(e *Encoder) {
		e.Varint(-1)
		e.Byte(byte(RetryListed))
		e.Uvarint(1)
		e.String("E")
		e.Byte(3)
		e.Uvarint(5)
	})
	if err := decodeSafely(t, &got, full); err != nil || got.MaxRetries != -1 || got.Retry != RetryListed ||
		len(got.RetryOn) != 1 || !got.Generator || !got.NoEvents || got.Backpressure != 5 {
		t.Errorf("submitMiddle with every field: %+v, %v", got, err)
	}
}
