// This file holds builders of hand-made Invocation and SubmitRequest
// encodings, whose fields the malformed-input tests set one at a time, and
// the test that the builders agree with Encode.

package abi

import (
	"bytes"
	"math"
	"testing"

	"github.com/rayhost/rayhost/internal/ids"
)

// enc builds raw (possibly invalid) messages for the malformed cases.
func enc(f func(e *Encoder)) []byte {
	var e Encoder
	f(&e)
	return e.B
}

// invocationHeader writes the fields of an Invocation before its argument
// list; invocationActor writes the actor ID that follows the list.
func invocationHeader(e *Encoder) {
	e.Byte(byte(KindCall))
	e.TaskID(testTask)
	e.Uvarint(0)     // attempt
	e.String("h:1")  // owner
	e.String("func") // function
}

func invocationActor(e *Encoder) { e.TaskID(testTask2) }

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
// whose fields between the two lists middle writes: max retries, retry mode,
// retry-on list, flags, backpressure, then the limits (memory pages,
// timeout), the grants (mounts, env) and the actor fields (kind, actor,
// max restarts, max task retries, name, namespace). noRetries, noLimits,
// noGrants and noActor write the defaults of each group.
func submitMiddle(middle func(e *Encoder)) []byte {
	base := (&SubmitRequest{Task: testTask, Function: "f", NumReturns: 1, Resources: Resources{CPUs: -1}}).Encode(nil)
	var e Encoder
	e.Raw(base[:submitCustomOffset()])
	noCustom(&e)
	middle(&e)
	noArgs(&e)
	return e.B
}

// submitRetries builds a SubmitRequest whose retry fields (max retries,
// retry mode, retry-on list, flags, backpressure) retries writes.
func submitRetries(retries func(e *Encoder)) []byte {
	return submitMiddle(func(e *Encoder) { retries(e); noLimits(e); noGrants(e); noActor(e) })
}

// submitLimits builds a SubmitRequest whose limits (memory pages, timeout)
// limits writes.
func submitLimits(limits func(e *Encoder)) []byte {
	return submitMiddle(func(e *Encoder) { noRetries(e); limits(e); noGrants(e); noActor(e) })
}

// submitGrants builds a SubmitRequest whose grants (mount list, env list)
// grants writes.
func submitGrants(grants func(e *Encoder)) []byte {
	return submitMiddle(func(e *Encoder) { noRetries(e); noLimits(e); grants(e); noActor(e) })
}

// submitActor builds a SubmitRequest whose actor fields (kind, actor, max
// restarts, max task retries, name, namespace) actor writes.
func submitActor(actor func(e *Encoder)) []byte {
	return submitMiddle(func(e *Encoder) { noRetries(e); noLimits(e); noGrants(e); actor(e) })
}

// actorFields writes the actor fields of a SubmitRequest with a raw kind
// byte and raw restart counts.
func actorFields(e *Encoder, kind byte, actor ids.TaskID, restarts, taskRetries int64, name, namespace string) {
	e.Byte(kind)
	e.TaskID(actor)
	e.Varint(restarts)
	e.Varint(taskRetries)
	e.String(name)
	e.String(namespace)
}

func noCustom(e *Encoder) { e.Uvarint(0) }

func noArgs(e *Encoder) { e.Uvarint(0) }

// noRetries: max retries 0, retry mode none, no retry-on list, no flags, no
// backpressure.
func noRetries(e *Encoder) { e.Varint(0); e.Byte(0); e.Uvarint(0); e.Byte(0); e.Uvarint(0) }

// noLimits: memory pages 0, timeout 0 (the host's defaults).
func noLimits(e *Encoder) { e.Uvarint(0); e.Varint(0) }

// noGrants: no mounts, no env.
func noGrants(e *Encoder) { e.Uvarint(0); e.Uvarint(0) }

// noActor: kind 0 (a plain call), no actor, max restarts 0, max task
// retries 0, no name, no namespace.
func noActor(e *Encoder) { actorFields(e, 0, ids.TaskID{}, 0, 0, "", "") }

// mount writes one mount with a raw mode byte.
func mount(e *Encoder, host, guest string, mode byte) { e.String(host); e.String(guest); e.Byte(mode) }

// The builders above must produce valid requests when given valid parts;
// otherwise the malformed cases built with them would prove nothing.
func TestSubmitBuilders(t *testing.T) {
	base := SubmitRequest{Task: testTask, Function: "f", NumReturns: 1, Resources: Resources{CPUs: -1}}
	with := func(f func(r *SubmitRequest)) SubmitRequest {
		r := base
		f(&r)
		return r
	}
	cases := []struct {
		name string
		in   []byte
		want SubmitRequest
	}{
		{"submitWith", submitWith(noCustom, noArgs), base},
		{"submitWith custom and args", submitWith(
			func(e *Encoder) { e.Uvarint(1); e.String("x"); e.Float(2) },
			func(e *Encoder) { e.Uvarint(1); e.Byte(0); e.Value(Value{Codec: CodecJSON, Data: []byte("1")}) }),
			with(func(r *SubmitRequest) {
				r.Resources.Custom = []Custom{{Name: "x", Amount: 2}}
				r.Args = []Arg{{Value: Value{Codec: CodecJSON, Data: []byte("1")}}}
			})},
		{"submitNumReturns", submitNumReturns(7), with(func(r *SubmitRequest) { r.NumReturns = 7 })},
		{"submitNumReturns largest valid", submitNumReturns(MaxIndex - 1), with(func(r *SubmitRequest) { r.NumReturns = MaxIndex - 1 })},
		{"submitMiddle defaults", submitMiddle(func(e *Encoder) { noRetries(e); noLimits(e); noGrants(e); noActor(e) }), base},
		{"submitRetries defaults", submitRetries(noRetries), base},
		{"submitLimits defaults", submitLimits(noLimits), base},
		{"submitGrants defaults", submitGrants(noGrants), base},
		{"submitActor defaults", submitActor(noActor), base},
		{"submitActor create", submitActor(func(e *Encoder) {
			actorFields(e, byte(KindActorCreate), ids.TaskID{}, -1, MaxIndex, "counter", "prod")
		}), with(func(r *SubmitRequest) {
			r.Kind, r.MaxRestarts, r.MaxTaskRetries, r.Name, r.Namespace = KindActorCreate, -1, MaxIndex, "counter", "prod"
		})},
		{"submitActor call", submitActor(func(e *Encoder) { actorFields(e, byte(KindActorCall), testTask2, 0, 0, "", "") }),
			with(func(r *SubmitRequest) { r.Kind, r.Actor = KindActorCall, testTask2 })},
		{"submitActor kind call", submitActor(func(e *Encoder) { actorFields(e, byte(KindCall), ids.TaskID{}, 0, 0, "", "") }),
			with(func(r *SubmitRequest) { r.Kind = KindCall })},
		{"submitRetries every field", submitRetries(func(e *Encoder) {
			e.Varint(-1)
			e.Byte(byte(RetryListed))
			e.Uvarint(1)
			e.String("E")
			e.Byte(3)
			e.Uvarint(5)
		}), with(func(r *SubmitRequest) {
			r.MaxRetries, r.Retry, r.RetryOn = -1, RetryListed, []string{"E"}
			r.Generator, r.NoEvents, r.Backpressure = true, true, 5
		})},
		{"submitLimits every field", submitLimits(func(e *Encoder) { e.Uvarint(math.MaxUint32); e.Varint(math.MaxInt64) }),
			with(func(r *SubmitRequest) { r.Limits = Limits{MemoryPages: math.MaxUint32, TimeoutNs: math.MaxInt64} })},
		{"submitGrants every field", submitGrants(func(e *Encoder) {
			e.Uvarint(2)
			mount(e, "/h", "/g", 1)
			mount(e, "", "", 0)
			e.Uvarint(1)
			e.String("K")
			e.String("")
		}), with(func(r *SubmitRequest) {
			r.Grants = Grants{
				Mounts: []Mount{{Host: "/h", Guest: "/g", ReadOnly: true}, {}},
				Env:    []KV{{Name: "K"}},
			}
		})},
		{"submitMiddle every field", submitMiddle(func(e *Encoder) {
			e.Varint(2)
			e.Byte(byte(RetryAll))
			e.Uvarint(0)
			e.Byte(1)
			e.Uvarint(0)
			e.Uvarint(64)
			e.Varint(1000)
			e.Uvarint(1)
			mount(e, "/d", "/d", 0)
			e.Uvarint(0)
			actorFields(e, byte(KindActorCreate), testTask2, 2, -1, "n", "ns")
		}), with(func(r *SubmitRequest) {
			r.MaxRetries, r.Retry, r.Generator = 2, RetryAll, true
			r.Limits = Limits{MemoryPages: 64, TimeoutNs: 1000}
			r.Grants.Mounts = []Mount{{Host: "/d", Guest: "/d"}}
			r.Kind, r.Actor, r.MaxRestarts, r.MaxTaskRetries, r.Name, r.Namespace = KindActorCreate, testTask2, 2, -1, "n", "ns"
		})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got SubmitRequest
			if err := decodeSafely(t, &got, c.in); err != nil || !equalMsg(&c.want, &got) {
				t.Fatalf("%+v, %v; want %+v", got, err, c.want)
			}
			// What the builders write is what Encode writes.
			if enc := c.want.Encode(nil); !bytes.Equal(enc, c.in) {
				t.Fatalf("builder wrote %x, Encode writes %x", c.in, enc)
			}
		})
	}
}
