// This file holds the round-trip table of every ABI message (encode, then
// decode, gives the message back) and the tests of what Decode does to the
// value it decodes into.

package abi

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"
)

type roundTripCase struct {
	name string
	msg  message
	// fresh returns an empty message of the same type to decode into.
	fresh func() message
}

func kib(n int) []byte {
	b := make([]byte, n<<10)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return b
}

// roundTripCases covers every message type; the malformed-input tests reuse
// their encodings.
func roundTripCases() []roundTripCase {
	newInv := func() message { return new(Invocation) }
	newSub := func() message { return new(SubmitRequest) }
	newGet := func() message { return new(GetRequest) }
	newGetRep := func() message { return new(GetReply) }
	newPut := func() message { return new(PutRequest) }
	newWait := func() message { return new(WaitRequest) }
	newWaitRep := func() message { return new(WaitReply) }
	newRes := func() message { return new(Result) }
	newSleep := func() message { return new(SleepRequest) }
	newGetActor := func() message { return new(GetActorRequest) }
	newActorInfo := func() message { return new(ActorInfo) }
	newKill := func() message { return new(KillRequest) }
	errVal := (&TaskError{Kind: ErrorApplication, Function: "f", Message: "boom"}).Encode()

	return []roundTripCase{
		// Invocation
		{"Invocation/call 3 args", &Invocation{
			Kind: KindCall, Task: testTask, Attempt: 3, Owner: "10.0.0.1:7000", Function: "square",
			Args: []Value{
				{Codec: CodecJSON, Data: []byte(`42`)},
				{Codec: CodecRaw, Data: []byte{0, 1, 2, 0xff}},
				errVal,
			},
		}, newInv},
		{"Invocation/main no args", &Invocation{Kind: KindMain, Task: testTask2, Owner: "h:1"}, newInv},
		{"Invocation/describe empty strings", &Invocation{Kind: KindDescribe}, newInv},
		{"Invocation/max attempt, empty and large args", &Invocation{
			Kind: KindCall, Task: testTask, Attempt: math.MaxUint32,
			Function: strings.Repeat("f", 300), // 2-byte length prefix
			Args: []Value{
				{Codec: CodecRaw, Data: []byte{}},
				{Codec: CodecJSON, Data: []byte(`""`)},
				{Codec: CodecRaw, Data: kib(1)},
			},
		}, newInv},
		{"Invocation/unicode", &Invocation{Kind: KindCall, Function: "函数", Owner: "hôte:1",
			Args: []Value{{Codec: CodecJSON, Data: []byte(`"héllo"`)}}}, newInv},
		{"Invocation/actor create", &Invocation{
			Kind: KindActorCreate, Task: testTask2, Attempt: 1, Owner: "10.0.0.1:7000", Function: "Counter",
			Args:  []Value{{Codec: CodecJSON, Data: []byte(`10`)}},
			Actor: testTask2, // a constructor's task is the actor's ID
		}, newInv},
		{"Invocation/actor call", &Invocation{
			Kind: KindActorCall, Task: testTask.Child(3), Owner: "h:1", Function: "Counter.Incr",
			Args:  []Value{{Codec: CodecJSON, Data: []byte(`1`)}, {Codec: CodecRaw, Data: kib(1)}},
			Actor: testTask2,
		}, newInv},
		{"Invocation/actor call no args max attempt", &Invocation{
			Kind: KindActorCall, Task: testTask2, Attempt: math.MaxUint32, Function: "Counter.Get", Actor: testTask,
		}, newInv},
		{"Invocation/plain call with an actor id", &Invocation{Kind: KindCall, Function: "f", Actor: testTask}, newInv},

		// SubmitRequest
		{"SubmitRequest/minimal default cpus", &SubmitRequest{
			Task: testTask2, Function: "f", NumReturns: 1, Resources: Resources{CPUs: -1},
		}, newSub},
		{"SubmitRequest/custom resources", &SubmitRequest{
			Task: testTask2, Function: "train", NumReturns: 2,
			Resources: Resources{CPUs: 0.5, GPUs: 2, Custom: []Custom{
				{Name: "tpu", Amount: 4},
				{Name: "memory_gib", Amount: 1.25},
				{Name: "", Amount: 0}, // invalid for the host, but encodable
			}},
		}, newSub},
		{"SubmitRequest/value and ref args", &SubmitRequest{
			Task: testTask2, Function: "combine", NumReturns: 1, Resources: Resources{CPUs: 1},
			Args: []Arg{
				{Value: Value{Codec: CodecJSON, Data: []byte(`{"a":1}`)}},
				{IsRef: true, Ref: Ref{ID: testRet0, Owner: "10.0.0.2:7000"}},
				{Value: Value{Codec: CodecRaw, Data: nil}},
				{IsRef: true, Ref: Ref{ID: testPut9}}, // empty owner
				{Value: errVal},
			},
		}, newSub},
		{"SubmitRequest/non-finite floats keep their bits", &SubmitRequest{
			Function: "f", NumReturns: MaxIndex - 1, // the largest valid count
			Resources: Resources{CPUs: math.NaN(), GPUs: math.Inf(1), Custom: []Custom{
				{Name: "x", Amount: math.Inf(-1)}, {Name: "y", Amount: math.Copysign(0, -1)},
			}},
		}, newSub},

		{"SubmitRequest/retries generator no events", &SubmitRequest{
			Task: testTask2, Function: "gen", NumReturns: 0, Resources: Resources{CPUs: -1},
			MaxRetries: -1, Retry: RetryListed, RetryOn: []string{"application", "E_TIMEOUT", ""},
			Generator: true, NoEvents: true, Backpressure: math.MaxUint32,
			Args: []Arg{{IsRef: true, Ref: Ref{ID: testRet0, Owner: "a:1"}}},
		}, newSub},
		{"SubmitRequest/max retries limit retry all", &SubmitRequest{
			Function: "f", NumReturns: 1, MaxRetries: 1 << 30, Retry: RetryAll, NoEvents: true,
		}, newSub},
		{"SubmitRequest/generator only", &SubmitRequest{Function: "f", Generator: true, MaxRetries: 3}, newSub},

		// SubmitRequest limits and grants
		{"SubmitRequest/limits only", &SubmitRequest{
			Task: testTask2, Function: "f", NumReturns: 1, Resources: Resources{CPUs: -1},
			Limits: Limits{MemoryPages: 256, TimeoutNs: 30_000_000_000},
		}, newSub},
		{"SubmitRequest/max limits", &SubmitRequest{
			Function: "f", NumReturns: 1,
			Limits: Limits{MemoryPages: math.MaxUint32, TimeoutNs: math.MaxInt64},
		}, newSub},
		{"SubmitRequest/memory only", &SubmitRequest{Function: "f", Limits: Limits{MemoryPages: 1}}, newSub},
		{"SubmitRequest/timeout only", &SubmitRequest{Function: "f", Limits: Limits{TimeoutNs: 1}}, newSub},
		{"SubmitRequest/mounts read-only and read-write", &SubmitRequest{
			Task: testTask2, Function: "io", NumReturns: 1, Resources: Resources{CPUs: 1},
			Grants: Grants{Mounts: []Mount{
				{Host: "/srv/data", Guest: "/data", ReadOnly: true},
				{Host: "/tmp/scratch", Guest: "/scratch", ReadOnly: false},
			}},
		}, newSub},
		{"SubmitRequest/env only", &SubmitRequest{
			Function: "f", NumReturns: 1,
			Grants: Grants{Env: []KV{{Name: "HOME", Value: "/"}, {Name: "GREETING", Value: "héllo wörld"}}},
		}, newSub},
		{"SubmitRequest/grants with empty strings", &SubmitRequest{
			Function: "f", NumReturns: 1,
			Grants: Grants{
				Mounts: []Mount{{Host: "", Guest: "", ReadOnly: true}, {}},
				Env:    []KV{{Name: "", Value: ""}, {Name: "EMPTY", Value: ""}, {Name: "", Value: "v"}},
			},
		}, newSub},
		{"SubmitRequest/every field", &SubmitRequest{
			Task: testTask2, Function: "everything", NumReturns: MaxIndex - 1,
			Resources:  Resources{CPUs: 2, GPUs: 0.5, Custom: []Custom{{Name: "tpu", Amount: 1}}},
			MaxRetries: 5, Retry: RetryListed, RetryOn: []string{"timeout", "E1"},
			Generator: true, Backpressure: 300, NoEvents: true,
			Limits: Limits{MemoryPages: 16384, TimeoutNs: 1_500_000_000},
			Grants: Grants{
				Mounts: []Mount{
					{Host: "/a", Guest: "/in", ReadOnly: true},
					{Host: "/b", Guest: "/out"},
					{Host: strings.Repeat("d/", 100), Guest: "/long"}, // 2-byte length prefix
				},
				Env: []KV{{Name: "K", Value: "v"}, {Name: "PATH", Value: "/bin:/usr/bin"}},
			},
			Kind: KindActorCreate, Actor: testTask, MaxRestarts: 4, MaxTaskRetries: -1,
			Name: "everything", Namespace: "ns",
			Args: []Arg{
				{Value: Value{Codec: CodecJSON, Data: []byte(`[1,2]`)}},
				{IsRef: true, Ref: Ref{ID: testRet5, Owner: "b:2"}},
			},
		}, newSub},

		// SubmitRequest actor fields
		{"SubmitRequest/explicit kind call", &SubmitRequest{
			Task: testTask2, Function: "f", NumReturns: 1, Resources: Resources{CPUs: -1}, Kind: KindCall,
		}, newSub},
		{"SubmitRequest/actor create named", &SubmitRequest{
			Task: testTask2, Function: "Counter", NumReturns: 1, Resources: Resources{CPUs: -1},
			Kind: KindActorCreate, MaxRestarts: 3, MaxTaskRetries: 2, Name: "counter", Namespace: "prod",
			Args: []Arg{{Value: Value{Codec: CodecJSON, Data: []byte(`10`)}}},
		}, newSub},
		{"SubmitRequest/actor create unlimited restarts", &SubmitRequest{
			Task: testTask2, Function: "Counter", NumReturns: 1,
			Kind: KindActorCreate, MaxRestarts: -1, MaxTaskRetries: -1,
			Name: strings.Repeat("n", 200), Namespace: "名前空間", // 2-byte length prefix, unicode
		}, newSub},
		{"SubmitRequest/actor create max restarts anonymous", &SubmitRequest{
			Task: testTask2, Function: "Counter", Kind: KindActorCreate,
			MaxRestarts: MaxIndex, MaxTaskRetries: MaxIndex, // the largest valid values
			Grants: Grants{Env: []KV{{Name: "K", Value: "v"}}},
		}, newSub},
		{"SubmitRequest/actor create namespace only", &SubmitRequest{
			Task: testTask2, Function: "C", Kind: KindActorCreate, Namespace: "ns",
		}, newSub},
		{"SubmitRequest/actor call", &SubmitRequest{
			Task: testTask.Child(9), Function: "Counter.Incr", NumReturns: 1, Resources: Resources{CPUs: -1},
			Kind: KindActorCall, Actor: testTask2,
			Args: []Arg{
				{Value: Value{Codec: CodecJSON, Data: []byte(`1`)}},
				{IsRef: true, Ref: Ref{ID: testRet0, Owner: "a:1"}},
			},
		}, newSub},
		{"SubmitRequest/actor call generator", &SubmitRequest{
			Task: testTask.Child(10), Function: "Counter.Stream", Generator: true, Backpressure: 4,
			Kind: KindActorCall, Actor: testTask2, MaxRetries: -1,
		}, newSub},

		// GetActorRequest, ActorInfo, KillRequest
		{"GetActorRequest/name and namespace", &GetActorRequest{Name: "counter", Namespace: "prod"}, newGetActor},
		{"GetActorRequest/name only", &GetActorRequest{Name: "counter"}, newGetActor},
		{"GetActorRequest/empty", &GetActorRequest{}, newGetActor},
		{"GetActorRequest/long unicode", &GetActorRequest{Name: strings.Repeat("é", 100), Namespace: "名前空間"}, newGetActor},
		{"ActorInfo/every field", &ActorInfo{Actor: testTask2, Owner: "10.0.0.1:7000", Class: "Counter"}, newActorInfo},
		{"ActorInfo/empty", &ActorInfo{}, newActorInfo},
		{"ActorInfo/long class", &ActorInfo{Actor: testTask, Class: strings.Repeat("C", 300)}, newActorInfo},
		{"KillRequest/restart", &KillRequest{Actor: testTask2}, newKill},
		{"KillRequest/no restart", &KillRequest{Actor: testTask2, NoRestart: true}, newKill},
		{"KillRequest/zero actor", &KillRequest{NoRestart: true}, newKill},

		// NextRequest, NextReply, CancelRequest, a lone Value
		{"NextRequest/first item no limit", &NextRequest{Task: testTask, Index: 0, TimeoutNs: -1}, func() message { return new(NextRequest) }},
		{"NextRequest/max", &NextRequest{Task: testTask2, Index: MaxIndex - 1, TimeoutNs: math.MaxInt64}, func() message { return new(NextRequest) }},
		{"NextReply/end", &NextReply{End: true}, func() message { return new(NextReply) }},
		{"NextReply/more", &NextReply{End: false}, func() message { return new(NextReply) }},
		{"CancelRequest/plain", &CancelRequest{Ref: Ref{ID: testRet0, Owner: "a:1"}}, func() message { return new(CancelRequest) }},
		{"CancelRequest/force recursive", &CancelRequest{Ref: Ref{ID: testPut9}, Force: true, Recursive: true}, func() message { return new(CancelRequest) }},
		{"CancelRequest/recursive", &CancelRequest{Ref: Ref{ID: testRet5}, Recursive: true}, func() message { return new(CancelRequest) }},
		{"Value/json", &loneValue{V: Value{Codec: CodecJSON, Data: []byte(`{"item":1}`)}}, func() message { return new(loneValue) }},
		{"Value/raw 1KiB", &loneValue{V: Value{Codec: CodecRaw, Data: kib(1)}}, func() message { return new(loneValue) }},
		{"Value/empty", &loneValue{V: Value{Codec: CodecRaw}}, func() message { return new(loneValue) }},

		// GetRequest
		{"GetRequest/no refs no limit", &GetRequest{TimeoutNs: -1}, newGet},
		{"GetRequest/poll one ref", &GetRequest{TimeoutNs: 0, Refs: []Ref{{ID: testRet0, Owner: "a:1"}}}, newGet},
		{"GetRequest/max timeout three refs", &GetRequest{TimeoutNs: math.MaxInt64, Refs: []Ref{
			{ID: testRet0, Owner: "a:1"}, {ID: testPut0}, {ID: testRet5, Owner: "b:2"},
		}}, newGet},
		{"GetRequest/min timeout", &GetRequest{TimeoutNs: math.MinInt64, Refs: []Ref{{ID: testPut9}}}, newGet},

		// GetReply
		{"GetReply/empty", &GetReply{}, newGetRep},
		{"GetReply/every codec", &GetReply{Values: []Value{
			{Codec: CodecJSON, Data: []byte(`[1,2,3]`)},
			{Codec: CodecRaw, Data: []byte("raw")},
			errVal,
			{Codec: CodecRaw}, // empty value
		}}, newGetRep},
		{"GetReply/1KiB value", &GetReply{Values: []Value{{Codec: CodecRaw, Data: kib(1)}}}, newGetRep},

		// PutRequest
		{"PutRequest/raw", &PutRequest{ID: testPut0, Value: Value{Codec: CodecRaw, Data: kib(1)}}, newPut},
		{"PutRequest/json", &PutRequest{ID: testPut9, Value: Value{Codec: CodecJSON, Data: []byte(`"s"`)}}, newPut},
		{"PutRequest/empty value", &PutRequest{ID: testTask.Put(math.MaxInt32), Value: Value{Codec: CodecRaw}}, newPut},
		{"PutRequest/error value", &PutRequest{ID: testPut0, Value: errVal}, newPut},
		{"PutDataRequest", &PutDataRequest{ID: testPut9, Codec: CodecRaw, Ptr: 1 << 20, Len: math.MaxUint32}, func() message { return new(PutDataRequest) }},
		{"PutDataRequest/empty", &PutDataRequest{ID: testPut0, Codec: CodecJSON}, func() message { return new(PutDataRequest) }},

		// WaitRequest
		{"WaitRequest/no refs", &WaitRequest{TimeoutNs: -1, NumReturns: 0}, newWait},
		{"WaitRequest/two of three", &WaitRequest{TimeoutNs: 1_500_000_000, NumReturns: 2, Refs: []Ref{
			{ID: testRet0, Owner: "a:1"}, {ID: testRet5, Owner: "a:1"}, {ID: testPut0},
		}}, newWait},
		{"WaitRequest/max num returns", &WaitRequest{TimeoutNs: 0, NumReturns: math.MaxUint32,
			Refs: []Ref{{ID: testRet0}}}, newWait},

		// WaitReply
		{"WaitReply/none ready", &WaitReply{}, newWaitRep},
		{"WaitReply/varint boundaries", &WaitReply{Ready: []uint32{0, 1, 127, 128, 16383, 16384, math.MaxUint32}}, newWaitRep},

		// Result
		{"Result/one value", &Result{Values: []Value{{Codec: CodecJSON, Data: []byte(`42`)}}}, newRes},
		{"Result/error", &Result{Values: []Value{errVal}}, newRes},
		{"Result/no values", &Result{}, newRes},
		{"Result/several", &Result{Values: []Value{{Codec: CodecRaw, Data: kib(2)}, {Codec: CodecJSON, Data: []byte(`null`)}}}, newRes},

		// SleepRequest
		{"SleepRequest/zero", &SleepRequest{Ns: 0}, newSleep},
		{"SleepRequest/one ns", &SleepRequest{Ns: 1}, newSleep},
		{"SleepRequest/max", &SleepRequest{Ns: math.MaxInt64}, newSleep},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, c := range roundTripCases() {
		t.Run(c.name, func(t *testing.T) {
			enc := c.msg.Encode(nil)
			got := c.fresh()
			if err := got.Decode(enc); err != nil {
				t.Fatalf("Decode(Encode(%+v)): %v", c.msg, err)
			}
			if !equalMsg(c.msg, got) {
				t.Fatalf("round trip changed the message\n got  %+v\n want %+v", got, c.msg)
			}
			// The encoding is deterministic.
			if again := got.Encode(nil); !bytes.Equal(again, enc) {
				t.Fatalf("re-encoding differs\n got  %x\n want %x", again, enc)
			}
			// Encode appends: a prefix is kept and the bytes after it are the same.
			prefix := []byte("prefix")
			withPrefix := c.msg.Encode(append([]byte(nil), prefix...))
			if !bytes.HasPrefix(withPrefix, prefix) || !bytes.Equal(withPrefix[len(prefix):], enc) {
				t.Fatalf("Encode(prefix) = %x, want %x followed by %x", withPrefix, prefix, enc)
			}
		})
	}
}

// TestDecodeOverwrites checks that decoding into a message that already
// holds another message leaves nothing of the old one behind.
func TestDecodeOverwrites(t *testing.T) {
	for _, c := range roundTripCases() {
		t.Run(c.name, func(t *testing.T) {
			// Fill the target with the largest case of the same type first.
			var biggest message
			for _, o := range roundTripCases() {
				if sameType(o.msg, c.msg) && o.name != c.name &&
					(biggest == nil || len(o.msg.Encode(nil)) > len(biggest.Encode(nil))) {
					biggest = o.msg
				}
			}
			got := c.fresh()
			if biggest != nil {
				if err := got.Decode(biggest.Encode(nil)); err != nil {
					t.Fatal(err)
				}
			}
			if err := got.Decode(c.msg.Encode(nil)); err != nil {
				t.Fatal(err)
			}
			if !equalMsg(c.msg, got) {
				t.Fatalf("decoding over %+v\n got  %+v\n want %+v", biggest, got, c.msg)
			}
		})
	}
}

func sameType(a, b message) bool {
	return fmt.Sprintf("%T", a) == fmt.Sprintf("%T", b)
}

// Decoded byte slices alias the input (no copy), and their capacity is
// clipped, so appending to one cannot overwrite the bytes that follow it.
func TestDecodeAliasesAndClips(t *testing.T) {
	in := (&GetReply{Values: []Value{
		{Codec: CodecRaw, Data: []byte("first")},
		{Codec: CodecRaw, Data: []byte("second")},
	}}).Encode(nil)
	var rep GetReply
	if err := rep.Decode(in); err != nil {
		t.Fatal(err)
	}
	first := rep.Values[0].Data
	if cap(first) != len(first) {
		t.Errorf("cap(Data) = %d, want %d (clipped)", cap(first), len(first))
	}
	_ = append(first, "XXXXXXXX"...)
	if string(rep.Values[1].Data) != "second" {
		t.Errorf("appending to Values[0].Data changed Values[1].Data to %q", rep.Values[1].Data)
	}
	i := bytes.Index(in, []byte("first"))
	in[i] = 'F'
	if string(rep.Values[0].Data) != "First" {
		t.Errorf("Values[0].Data = %q after changing the input; want it to alias the input", rep.Values[0].Data)
	}
}
