package abi

import (
	"errors"
	"fmt"
	"math"
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
	// The cases must include a SubmitRequest with limits, mounts and env
	// vars, so that a cut inside the grants is tried too, and requests and
	// invocations with actor fields, so that cuts inside those are tried.
	var withGrants, withActor, withActorInvocation bool
	for _, c := range roundTripCases() {
		if r, ok := c.msg.(*SubmitRequest); ok && len(r.Grants.Mounts) > 0 && len(r.Grants.Env) > 0 &&
			r.Limits.MemoryPages != 0 && r.Limits.TimeoutNs != 0 {
			withGrants = true
		}
		if r, ok := c.msg.(*SubmitRequest); ok && r.Kind == KindActorCreate && r.MaxRestarts != 0 &&
			r.MaxTaskRetries != 0 && r.Name != "" && r.Namespace != "" && len(r.Args) > 0 {
			withActor = true
		}
		if r, ok := c.msg.(*Invocation); ok && !r.Actor.IsZero() && len(r.Args) > 0 {
			withActorInvocation = true
		}
	}
	if !withGrants {
		t.Error("no round-trip case is a SubmitRequest with limits, mounts and env vars")
	}
	if !withActor {
		t.Error("no round-trip case is a SubmitRequest creating a named actor with restarts and arguments")
	}
	if !withActorInvocation {
		t.Error("no round-trip case is an Invocation with an actor and arguments")
	}
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

func TestMalformed(t *testing.T) {
	newInv := func() message { return new(Invocation) }
	newSub := func() message { return new(SubmitRequest) }
	newGet := func() message { return new(GetRequest) }
	newGetRep := func() message { return new(GetReply) }
	newPut := func() message { return new(PutRequest) }
	newWait := func() message { return new(WaitRequest) }
	newWaitRep := func() message { return new(WaitReply) }
	newSleep := func() message { return new(SleepRequest) }
	newGetActor := func() message { return new(GetActorRequest) }
	newActorInfo := func() message { return new(ActorInfo) }
	newKill := func() message { return new(KillRequest) }

	// Uvarints that binary.Uvarint rejects.
	overflow10 := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}
	tooLong := []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}

	cases := []struct {
		name  string
		fresh func() message
		in    []byte
	}{
		// Invalid codecs.
		{"Invocation codec 5", newInv, enc(func(e *Encoder) { invocationHeader(e); e.Uvarint(1); e.Byte(5); e.Bytes(nil); invocationActor(e) })},
		{"Invocation codec 255", newInv, enc(func(e *Encoder) {
			invocationHeader(e)
			e.Uvarint(1)
			e.Byte(255)
			e.Bytes([]byte("x"))
			invocationActor(e)
		})},
		{"GetReply codec 5", newGetRep, enc(func(e *Encoder) { e.Uvarint(1); e.Byte(5); e.Bytes([]byte("42")) })},
		{"GetReply ints of 2 bytes", newGetRep, enc(func(e *Encoder) { e.Uvarint(1); e.Byte(byte(CodecInts)); e.Bytes([]byte("42")) })},
		{"GetReply second value codec 200", newGetRep, enc(func(e *Encoder) {
			e.Uvarint(2)
			e.Value(Value{Codec: CodecRaw})
			e.Byte(200)
			e.Bytes(nil)
		})},
		{"PutRequest codec 5", newPut, enc(func(e *Encoder) { e.Raw(testPut0[:]); e.Byte(5); e.Bytes(nil) })},
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
		{"Invocation kind 6", newInv, (&Invocation{Kind: 6, Function: "f"}).Encode(nil)},
		{"Invocation kind 6 with actor", newInv, (&Invocation{Kind: 6, Task: testTask, Function: "C.m", Actor: testTask2,
			Args: []Value{{Codec: CodecJSON, Data: []byte("1")}}}).Encode(nil)},
		{"Invocation kind 255", newInv, (&Invocation{Kind: 255}).Encode(nil)},

		// The actor ID ends an Invocation: it must be all there.
		{"Invocation without actor", newInv, enc(func(e *Encoder) { invocationHeader(e); e.Uvarint(0) })},
		{"Invocation actor cut short", newInv, enc(func(e *Encoder) { invocationHeader(e); e.Uvarint(0); e.Raw(testTask2[:15]) })},
		{"Invocation args then actor cut short", newInv, enc(func(e *Encoder) {
			invocationHeader(e)
			e.Uvarint(1)
			e.Value(Value{Codec: CodecJSON, Data: []byte("1")})
			e.Raw(testTask2[:1])
		})},

		// SubmitRequest kinds: 0 and KindCall are a call; KindActorCreate
		// and KindActorCall are accepted; nothing else.
		{"SubmitRequest kind 6", newSub, (&SubmitRequest{Function: "f", Kind: 6}).Encode(nil)},
		{"SubmitRequest kind 6 builder", newSub, submitActor(func(e *Encoder) { actorFields(e, 6, testTask2, 0, 0, "", "") })},
		{"SubmitRequest kind main", newSub, (&SubmitRequest{Function: "f", Kind: KindMain}).Encode(nil)},
		{"SubmitRequest kind describe", newSub, (&SubmitRequest{Function: "f", Kind: KindDescribe}).Encode(nil)},
		{"SubmitRequest kind 255", newSub, (&SubmitRequest{Function: "f", Kind: 255, Actor: testTask2, Name: "n"}).Encode(nil)},

		// Restart counts are in -1..MaxIndex.
		{"SubmitRequest max restarts -2", newSub, (&SubmitRequest{Function: "C", Kind: KindActorCreate, MaxRestarts: -2}).Encode(nil)},
		{"SubmitRequest max restarts MaxIndex+1", newSub, (&SubmitRequest{Function: "C", Kind: KindActorCreate, MaxRestarts: MaxIndex + 1}).Encode(nil)},
		{"SubmitRequest max restarts min int32", newSub, (&SubmitRequest{Function: "C", Kind: KindActorCreate, MaxRestarts: math.MinInt32}).Encode(nil)},
		{"SubmitRequest max restarts max int32", newSub, (&SubmitRequest{Function: "C", Kind: KindActorCreate, MaxRestarts: math.MaxInt32}).Encode(nil)},
		{"SubmitRequest max restarts beyond int32", newSub, submitActor(func(e *Encoder) {
			actorFields(e, byte(KindActorCreate), ids.TaskID{}, 1<<40, 0, "", "")
		})},
		{"SubmitRequest max restarts 2^32-1", newSub, submitActor(func(e *Encoder) {
			actorFields(e, byte(KindActorCreate), ids.TaskID{}, math.MaxUint32, 0, "", "")
		})},
		{"SubmitRequest max task retries -2", newSub, (&SubmitRequest{Function: "C", Kind: KindActorCreate, MaxTaskRetries: -2}).Encode(nil)},
		{"SubmitRequest max task retries MaxIndex+1", newSub, (&SubmitRequest{Function: "C", Kind: KindActorCreate, MaxTaskRetries: MaxIndex + 1}).Encode(nil)},
		{"SubmitRequest max task retries min int64", newSub, submitActor(func(e *Encoder) {
			actorFields(e, byte(KindActorCreate), ids.TaskID{}, 0, math.MinInt64, "", "")
		})},
		{"SubmitRequest overflowing max restarts", newSub, submitActor(func(e *Encoder) {
			e.Byte(byte(KindActorCreate))
			e.TaskID(ids.TaskID{})
			e.Raw(overflow10)
			e.Varint(0)
			e.String("")
			e.String("")
		})},
		{"SubmitRequest actor cut short", newSub, enc(func(e *Encoder) {
			base := submitActor(func(e *Encoder) { actorFields(e, byte(KindActorCall), testTask2, 0, 0, "", "") })
			at := len(base) - 1 - 4 - 16 // args count, restarts, task retries, name, namespace, actor
			e.Raw(base[:at+10])
		})},
		{"SubmitRequest name length beyond input", newSub, submitActor(func(e *Encoder) {
			e.Byte(byte(KindActorCreate))
			e.TaskID(ids.TaskID{})
			e.Varint(0)
			e.Varint(0)
			e.Uvarint(50)
			e.Raw([]byte("short"))
		})},
		{"SubmitRequest namespace missing", newSub, submitActor(func(e *Encoder) {
			e.Byte(byte(KindActorCreate))
			e.TaskID(ids.TaskID{})
			e.Varint(0)
			e.Varint(0)
			e.String("name")
		})},

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
			invocationActor(e)
		})},
		{"SubmitRequest num returns 2^32", newSub, submitNumReturns(1 << 32)},
		{"SubmitRequest backpressure 2^32", newSub, submitRetries(func(e *Encoder) {
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
		{"SubmitRequest max retries beyond int32", newSub, submitRetries(func(e *Encoder) {
			e.Varint(1 << 40)
			e.Byte(0)
			e.Uvarint(0)
			e.Byte(0)
			e.Uvarint(0)
		})},
		{"SubmitRequest retry mode 3", newSub, (&SubmitRequest{Function: "f", Retry: 3}).Encode(nil)},
		{"SubmitRequest retry mode 255", newSub, (&SubmitRequest{Function: "f", Retry: 255, RetryOn: []string{"x"}}).Encode(nil)},
		{"SubmitRequest flags 8", newSub, submitRetries(func(e *Encoder) {
			e.Varint(0)
			e.Byte(0)
			e.Uvarint(0)
			e.Byte(8)
			e.Uvarint(0)
		})},
		{"SubmitRequest flags 255", newSub, submitRetries(func(e *Encoder) {
			e.Varint(0)
			e.Byte(0)
			e.Uvarint(0)
			e.Byte(255)
			e.Uvarint(0)
		})},
		{"SubmitRequest retry-on count beyond input", newSub, submitRetries(func(e *Encoder) {
			e.Varint(3)
			e.Byte(byte(RetryListed))
			e.Uvarint(31) // the 30 bytes left could hold 30 names
			e.String("a")
			e.Byte(0)
			e.Uvarint(0)
		})},
		// Indices and counts of returns must stay below MaxIndex.
		{"SubmitRequest num returns MaxIndex", newSub, (&SubmitRequest{Function: "f", NumReturns: MaxIndex}).Encode(nil)},
		{"SubmitRequest num returns MaxIndex builder", newSub, submitNumReturns(MaxIndex)},
		{"SubmitRequest num returns max uint32", newSub, (&SubmitRequest{Function: "f", NumReturns: math.MaxUint32,
			Resources: Resources{CPUs: math.NaN()}}).Encode(nil)},
		{"NextRequest index MaxIndex", func() message { return new(NextRequest) }, (&NextRequest{Task: testTask, Index: MaxIndex}).Encode(nil)},
		{"NextRequest index max uint32", func() message { return new(NextRequest) }, (&NextRequest{Task: testTask2, Index: math.MaxUint32, TimeoutNs: math.MaxInt64}).Encode(nil)},

		// Limits: a timeout must not be negative, memory pages fit 32 bits.
		{"SubmitRequest timeout -1", newSub, (&SubmitRequest{Function: "f", Limits: Limits{TimeoutNs: -1}}).Encode(nil)},
		{"SubmitRequest timeout min int64", newSub, (&SubmitRequest{Function: "f", NumReturns: 1,
			Limits: Limits{MemoryPages: 16, TimeoutNs: math.MinInt64}}).Encode(nil)},
		{"SubmitRequest negative timeout with grants", newSub, (&SubmitRequest{Function: "f",
			Limits: Limits{TimeoutNs: -1_000_000_000},
			Grants: Grants{Mounts: []Mount{{Host: "/h", Guest: "/g"}}, Env: []KV{{Name: "K", Value: "v"}}}}).Encode(nil)},
		{"SubmitRequest memory pages 2^32", newSub, submitLimits(func(e *Encoder) { e.Uvarint(1 << 32); e.Varint(0) })},
		{"SubmitRequest overflowing timeout", newSub, submitLimits(func(e *Encoder) { e.Uvarint(0); e.Raw(overflow10) })},

		// Grants: a mount's mode byte is 0 (read-write) or 1 (read-only).
		{"SubmitRequest mount mode 2", newSub, submitGrants(func(e *Encoder) {
			e.Uvarint(1)
			mount(e, "/h", "/g", 2)
			e.Uvarint(0)
		})},
		{"SubmitRequest mount mode 255", newSub, submitGrants(func(e *Encoder) {
			e.Uvarint(1)
			mount(e, "", "", 255)
			e.Uvarint(0)
		})},
		{"SubmitRequest second mount mode 2", newSub, submitGrants(func(e *Encoder) {
			e.Uvarint(2)
			mount(e, "/a", "/a", 1)
			mount(e, "/b", "/b", 2)
			e.Uvarint(1)
			e.String("K")
			e.String("v")
		})},
		{"SubmitRequest mount count beyond input", newSub, submitGrants(func(e *Encoder) {
			e.Uvarint(11) // the 30 bytes left could hold 10 mounts
			mount(e, "/h", "/g", 0)
			e.Uvarint(0)
		})},
		{"SubmitRequest env count beyond input", newSub, submitGrants(func(e *Encoder) {
			e.Uvarint(0)
			e.Uvarint(14) // the 26 bytes left could hold 13 variables
			e.String("K")
			e.String("v")
		})},
		{"SubmitRequest env value length beyond input", newSub, submitGrants(func(e *Encoder) {
			e.Uvarint(0)
			e.Uvarint(1)
			e.String("K")
			e.Uvarint(50)
			e.Raw([]byte("short"))
		})},

		{"WaitRequest num returns 2^32", newWait, enc(func(e *Encoder) { e.Varint(0); e.Uvarint(1 << 32); e.Uvarint(0) })},
		{"WaitReply index 2^32", newWaitRep, enc(func(e *Encoder) { e.Uvarint(1); e.Uvarint(1 << 32) })},

		// NextReply and CancelRequest.
		{"NextReply 2", func() message { return new(NextReply) }, []byte{2}},
		{"NextReply two bytes", func() message { return new(NextReply) }, []byte{1, 1}},
		{"CancelRequest flags 4", func() message { return new(CancelRequest) }, append((&CancelRequest{Ref: Ref{ID: testRet0}}).Encode(nil)[:ids.ObjectIDSize+1], 4)},
		{"CancelRequest zero-index ref", func() message { return new(CancelRequest) }, (&CancelRequest{Ref: Ref{ID: zeroIndexID()}}).Encode(nil)},
		{"NextRequest index 2^32", func() message { return new(NextRequest) }, enc(func(e *Encoder) { e.TaskID(testTask); e.Uvarint(1 << 32); e.Varint(0) })},
		{"Value codec 5", func() message { return new(loneValue) }, []byte{5, 0}},
		{"Value ints of 9 bytes", func() message { return new(loneValue) }, append([]byte{3, 9}, make([]byte, 9)...)},

		// KillRequest: the flag is 0 (may restart) or 1 (no restart).
		{"KillRequest flag 2", newKill, append(testTask2[:], 2)},
		{"KillRequest flag 255", newKill, append(testTask2[:], 255)},
		{"KillRequest no flag", newKill, testTask2[:]},
		{"KillRequest short actor", newKill, append(testTask2[:15:15], 1)},

		// GetActorRequest and ActorInfo: strings must be all there.
		{"GetActorRequest name length beyond input", newGetActor, enc(func(e *Encoder) { e.Uvarint(10); e.Raw([]byte("short")) })},
		{"GetActorRequest namespace missing", newGetActor, enc(func(e *Encoder) { e.String("counter") })},
		{"GetActorRequest namespace length beyond input", newGetActor, enc(func(e *Encoder) { e.String("counter"); e.Uvarint(3); e.Raw([]byte("n")) })},
		{"ActorInfo short actor", newActorInfo, testTask2[:10]},
		{"ActorInfo class missing", newActorInfo, enc(func(e *Encoder) { e.TaskID(testTask2); e.String("h:1") })},
		{"ActorInfo class length beyond input", newActorInfo, enc(func(e *Encoder) { e.TaskID(testTask2); e.String("h:1"); e.Uvarint(8); e.Raw([]byte("Count")) })},

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
		{"submit flags", new(SubmitRequest), submitRetries(func(e *Encoder) { e.Varint(0); e.Byte(0); e.Uvarint(0); e.Byte(8); e.Uvarint(0) }), "abi: malformed message: bad flags"},
		{"num returns", new(SubmitRequest), (&SubmitRequest{Function: "f", NumReturns: MaxIndex}).Encode(nil), "abi: malformed message: bad num returns"},
		{"next index", new(NextRequest), (&NextRequest{Index: MaxIndex}).Encode(nil), "abi: malformed message: bad index"},
		{"timeout", new(SubmitRequest), (&SubmitRequest{Limits: Limits{TimeoutNs: -1}}).Encode(nil), "abi: malformed message: bad timeout"},
		{"memory pages", new(SubmitRequest), submitLimits(func(e *Encoder) { e.Uvarint(1 << 32); e.Varint(0) }), "abi: malformed message: bad uint32"},
		{"mount mode", new(SubmitRequest), submitGrants(func(e *Encoder) { e.Uvarint(1); mount(e, "/h", "/g", 2); e.Uvarint(0) }), "abi: malformed message: bad mount mode"},
		{"mount count", new(SubmitRequest), submitGrants(func(e *Encoder) { e.Uvarint(11); mount(e, "/h", "/g", 0); e.Uvarint(0) }), "abi: malformed message: bad count"},
		{"env count", new(SubmitRequest), submitGrants(func(e *Encoder) { e.Uvarint(0); e.Uvarint(14); e.String("K"); e.String("v") }), "abi: malformed message: bad count"},
		{"retry-on count", new(SubmitRequest), submitRetries(func(e *Encoder) {
			e.Varint(3)
			e.Byte(byte(RetryListed))
			e.Uvarint(31)
			e.String("a")
			e.Byte(0)
			e.Uvarint(0)
		}), "abi: malformed message: bad count"},
		{"cancel flags", new(CancelRequest), append((&CancelRequest{Ref: Ref{ID: testRet0}}).Encode(nil)[:ids.ObjectIDSize+1], 4), "abi: malformed message: bad flags"},
		{"first error sticks", new(Invocation), []byte{byte(KindCall), 1, 2}, "abi: malformed message: bad bytes"},
		{"invocation kind 6", new(Invocation), (&Invocation{Kind: 6, Actor: testTask2}).Encode(nil), "abi: malformed message: bad kind"},
		{"invocation actor cut short", new(Invocation), enc(func(e *Encoder) { invocationHeader(e); e.Uvarint(0); e.Raw(testTask2[:15]) }),
			"abi: malformed message: bad bytes"},
		{"submit kind", new(SubmitRequest), (&SubmitRequest{Function: "f", Kind: 6}).Encode(nil), "abi: malformed message: bad kind"},
		{"max restarts", new(SubmitRequest), (&SubmitRequest{Kind: KindActorCreate, MaxRestarts: -2}).Encode(nil), "abi: malformed message: bad actor retries"},
		{"max restarts MaxIndex+1", new(SubmitRequest), (&SubmitRequest{Kind: KindActorCreate, MaxRestarts: MaxIndex + 1}).Encode(nil), "abi: malformed message: bad actor retries"},
		{"max task retries", new(SubmitRequest), (&SubmitRequest{Kind: KindActorCreate, MaxTaskRetries: MaxIndex + 1}).Encode(nil), "abi: malformed message: bad actor retries"},
		// The retry check comes first: a request with both defects names it.
		{"max restarts before kind", new(SubmitRequest), (&SubmitRequest{Kind: 6, MaxRestarts: -2}).Encode(nil), "abi: malformed message: bad actor retries"},
		{"kill flag", new(KillRequest), append(testTask2[:], 2), "abi: malformed message: bad flag"},
		{"kill trailing", new(KillRequest), append(testTask2[:], 1, 0), "abi: malformed message: 1 trailing bytes"},
		{"get actor length", new(GetActorRequest), []byte{5, 'a'}, "abi: malformed message: bad length"},
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
