// Package abi is the one definition of the host–guest ABI of rayhost
// (guest-sdk/ABI.md documents it for people). The guest SDK and the host both
// encode and decode the messages defined here, so they cannot drift apart.
//
// The ABI is "pull" style: the guest exports no allocator. Every message the
// host has for the guest waits in a per-instance mailbox; a host function
// returns the message's length and the guest copies it into memory it owns
// with the recv import. Measured here this is 5× cheaper than an exported
// allocator, and the host never writes outside a buffer the guest chose.
package abi

// Version is the ABI version this package speaks. A module reports its
// version through the ExportVersion export; the host refuses others.
const Version = 1

// Names of the module's exports and the host's imports.
const (
	// ExportVersion is `() -> i32`: the ABI version the module was built for.
	ExportVersion = "rayhost_abi_version"
	// ExportInvoke is `(input_len i32) -> i32`: run the invocation that waits
	// in the mailbox; returns a Status.
	ExportInvoke = "rayhost_invoke"
	// ImportModule is the import module name of the host functions.
	ImportModule = "rayhost"
	// ImportCall is `(op i32, ptr i32, len i32) -> i64`: a request to the host.
	// A result ≥ 0 is the length of the reply now in the mailbox (0: none);
	// a negative result is an ErrCode.
	ImportCall = "call"
	// ImportRecv is `(ptr i32, len i32) -> i32`: copy the mailbox into guest
	// memory; returns the number of bytes copied.
	ImportRecv = "recv"
)

// Op names a request the guest makes through ImportCall.
type Op uint32

// The ops a guest may call, and two the host uses among its hosts. What
// each op carries, who answers it and how is in the table of ops.go (the
// one place the worker and the host classify ops).
const (
	OpSubmit    Op = 1  // SubmitRequest; no reply
	OpGet       Op = 2  // GetRequest; reply GetReply
	OpPut       Op = 3  // PutRequest; no reply
	OpWait      Op = 4  // WaitRequest; reply WaitReply
	OpResult    Op = 5  // Result of the running invocation; no reply
	OpCancelled Op = 6  // empty; reply is one byte, 1 if the task was cancelled
	OpSleep     Op = 7  // SleepRequest; ends early with ErrCodeCancelled
	OpYield     Op = 8  // a Value: the next item of a generator; waits under backpressure
	OpNext      Op = 9  // NextRequest; reply NextReply
	OpCancel    Op = 10 // CancelRequest; no reply
	OpGetActor  Op = 11 // GetActorRequest; reply ActorInfo
	OpKill      Op = 12 // KillRequest; no reply
	OpRelease   Op = 13 // ReleaseRequest; no reply

	// OpPutHeld and OpYieldHeld are host-internal: never a guest's (a
	// worker answers them with ErrCodeUnknownOp). A host running a task
	// for another host relays them to the task's owner, on the peer
	// Execute stream, in place of a guest's put or yield of a value too
	// large to travel: it keeps the bytes, and the payload says where
	// they are. OpPutHeld's payload is the object ID (raw) and the held
	// value (a length-prefixed byte string); OpYieldHeld's is the held
	// value. A held value is host/internal/peerwire.Held, encoded.
	OpPutHeld   Op = 1000
	OpYieldHeld Op = 1001
)

// ErrCode is a negative result of ImportCall.
type ErrCode int64

const (
	ErrCodeBadRequest ErrCode = -1 // the request did not decode or is invalid
	ErrCodeTimeout    ErrCode = -2 // the call's timeout passed
	ErrCodeCancelled  ErrCode = -3 // the calling task was cancelled
	ErrCodeUnknownOp  ErrCode = -4 // the host does not know the op (or, 14–16, the instance is not a concurrent actor's)
	ErrCodeHost       ErrCode = -5 // the host failed (see the worker's log)
	ErrCodeTooLarge   ErrCode = -6 // a size limit was exceeded (a result larger than the task may return)
	ErrCodeNotFound   ErrCode = -7 // the named thing (an actor) does not exist
)

func (e ErrCode) String() string {
	switch e {
	case ErrCodeBadRequest:
		return "bad request"
	case ErrCodeTimeout:
		return "timeout"
	case ErrCodeCancelled:
		return "cancelled"
	case ErrCodeUnknownOp:
		return "unknown op"
	case ErrCodeHost:
		return "host error"
	case ErrCodeTooLarge:
		return "too large"
	case ErrCodeNotFound:
		return "not found"
	}
	return "error"
}

// Kind says what an invocation asks the module to do.
type Kind uint8

const (
	KindCall     Kind = 1 // run a registered remote function
	KindMain     Kind = 2 // run the driver registered with ray.Main
	KindDescribe Kind = 3 // reply with a Description
	// KindActorCreate runs an actor's constructor; the instance keeps the
	// state under Invocation.Actor.
	KindActorCreate Kind = 4
	// KindActorCall runs a method on the state of Invocation.Actor.
	KindActorCall Kind = 5
)

// Status is the result of ExportInvoke.
type Status int32

const (
	StatusOK         Status = 0 // a Result with the values was sent
	StatusError      Status = 1 // a Result holding one CodecError value was sent
	StatusBadRequest Status = 2 // as StatusError; the invocation itself was wrong
)

// Codec says how a value's bytes encode it. The numbers are shared with
// package store.
type Codec uint8

const (
	CodecJSON  Codec = 0 // JSON text
	CodecRaw   Codec = 1 // a byte string, as is
	CodecError Codec = 2 // a TaskError as JSON: the value of a failed task
	// CodecInts is a list of signed integers, 8 bytes each, little-endian
	// (a Go []int, []int64 or []int32): the same value as the JSON array
	// of those numbers, without the text. A guest receives it only if its
	// Description lists "ints" (Description.Speaks); clients get it as
	// JSON (Value.ToJSON).
	CodecInts Codec = 3
	// CodecCBOR is one CBOR data item (RFC 8949; cbor.go): what the Go
	// SDK encodes other values as. ObjectRefs and actor handles inside it
	// are tagged (TagObjectRef, TagActor). Guests receive it only if their
	// Description lists "cbor"; clients get its JSON (Value.ToJSON).
	CodecCBOR Codec = 4

	// CodecHeld is host-internal: a value whose bytes other hosts hold;
	// its Data is an encoded host/internal/peerwire.Held. The object
	// table records the holders instead of bytes. It never reaches a
	// guest, a client or the store, and Valid reports false for it, so no
	// decoder of a guest's or a client's value accepts it.
	CodecHeld Codec = 0x80
)

func (c Codec) String() string {
	switch c {
	case CodecJSON:
		return "json"
	case CodecRaw:
		return "raw"
	case CodecError:
		return "error"
	case CodecInts:
		return "ints"
	case CodecCBOR:
		return "cbor"
	case CodecHeld:
		return "held"
	}
	return "codec(?)"
}

// Valid reports whether c is a known codec.
func (c Codec) Valid() bool { return c <= CodecCBOR }
