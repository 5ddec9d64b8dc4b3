// This file holds the guest's requests to the host other than Submit, and
// their replies: objects (Get, Put, Wait), Sleep, a generator's next item
// (Next), Cancel, and actors (GetActor, Kill).

package abi

import (
	"github.com/rayhost/rayhost/internal/ids"
)

// GetRequest asks for the values of refs. Timeout < 0 waits without limit.
type GetRequest struct {
	TimeoutNs int64
	Refs      []Ref
}

func (v *GetRequest) Encode(b []byte) []byte {
	e := Encoder{B: b}
	e.Varint(v.TimeoutNs)
	encodeRefs(&e, v.Refs)
	return e.B
}

func (v *GetRequest) Decode(b []byte) error {
	d := NewDecoder(b)
	v.TimeoutNs = d.Varint()
	v.Refs = decodeRefs(d)
	return d.Done()
}

// GetReply holds one value per requested ref, in order. A failed task's
// value has CodecError.
type GetReply struct{ Values []Value }

func (v *GetReply) Encode(b []byte) []byte {
	e := Encoder{B: b}
	e.Uvarint(uint64(len(v.Values)))
	for _, x := range v.Values {
		e.Value(x)
	}
	return e.B
}

// TailBytes: EncodeSplit leaves a last value at least this large out of
// the head, to be written from where it is.
const TailBytes = 64 << 10

// EncodeSplit encodes v as Encode does, in two parts whose concatenation
// is Encode's message: the head, appended to b, and the tail, which is the
// last value's bytes themselves (not copied) when they are at least
// TailBytes long, else nil. A large value read back goes to the socket
// from where it is.
func (v *GetReply) EncodeSplit(b []byte) (head, tail []byte) {
	n := len(v.Values)
	if n == 0 || len(v.Values[n-1].Data) < TailBytes {
		return v.Encode(b), nil
	}
	e := Encoder{B: b}
	e.Uvarint(uint64(n))
	for _, x := range v.Values[:n-1] {
		e.Value(x)
	}
	last := v.Values[n-1]
	e.Byte(byte(last.Codec))
	e.Uvarint(uint64(len(last.Data)))
	return e.B, last.Data
}

func (v *GetReply) Decode(b []byte) error {
	d := NewDecoder(b)
	n := d.Count(2)
	v.Values = make([]Value, n)
	for i := range v.Values {
		v.Values[i] = d.Value()
	}
	return d.Done()
}

// PutRequest stores a value under an ID the guest derived (ids.TaskID.Put).
type PutRequest struct {
	ID    ids.ObjectID
	Value Value
}

func (v *PutRequest) Encode(b []byte) []byte {
	e := Encoder{B: b}
	e.Raw(v.ID[:])
	e.Value(v.Value)
	return e.B
}

func (v *PutRequest) Decode(b []byte) error {
	d := NewDecoder(b)
	v.ID = d.ObjectID()
	v.Value = d.Value()
	if d.Err() == nil && !v.ID.IsPut() {
		d.fail("put id")
	}
	return d.Done()
}

// WaitRequest waits until NumReturns of Refs are ready or the timeout passes.
// TimeoutNs < 0 waits without limit; 0 polls.
type WaitRequest struct {
	TimeoutNs  int64
	NumReturns uint32
	Refs       []Ref
}

func (v *WaitRequest) Encode(b []byte) []byte {
	e := Encoder{B: b}
	e.Varint(v.TimeoutNs)
	e.Uvarint(uint64(v.NumReturns))
	encodeRefs(&e, v.Refs)
	return e.B
}

func (v *WaitRequest) Decode(b []byte) error {
	d := NewDecoder(b)
	v.TimeoutNs = d.Varint()
	v.NumReturns = d.Uint32()
	v.Refs = decodeRefs(d)
	return d.Done()
}

// WaitReply lists the indices (into WaitRequest.Refs) of the ready refs, in
// increasing order.
type WaitReply struct{ Ready []uint32 }

func (v *WaitReply) Encode(b []byte) []byte {
	e := Encoder{B: b}
	e.Uvarint(uint64(len(v.Ready)))
	for _, i := range v.Ready {
		e.Uvarint(uint64(i))
	}
	return e.B
}

func (v *WaitReply) Decode(b []byte) error {
	d := NewDecoder(b)
	n := d.Count(1)
	v.Ready = make([]uint32, n)
	for i := range v.Ready {
		v.Ready[i] = d.Uint32()
	}
	return d.Done()
}

// SleepRequest sleeps for Ns nanoseconds unless the task is cancelled.
type SleepRequest struct{ Ns int64 }

func (v *SleepRequest) Encode(b []byte) []byte {
	e := Encoder{B: b}
	e.Varint(v.Ns)
	return e.B
}

func (v *SleepRequest) Decode(b []byte) error {
	d := NewDecoder(b)
	v.Ns = d.Varint()
	if d.Err() == nil && v.Ns < 0 {
		d.fail("duration")
	}
	return d.Done()
}

// MaxIndex bounds a return or item index, far below the put range.
const MaxIndex = 1 << 30

// NextRequest asks for the next item of a generator task: it waits until
// item Index exists or the stream has ended.
type NextRequest struct {
	Task      ids.TaskID
	Index     uint32
	TimeoutNs int64
}

func (v *NextRequest) Encode(b []byte) []byte {
	e := Encoder{B: b}
	e.TaskID(v.Task)
	e.Uvarint(uint64(v.Index))
	e.Varint(v.TimeoutNs)
	return e.B
}

func (v *NextRequest) Decode(b []byte) error {
	d := NewDecoder(b)
	v.Task = d.TaskID()
	v.Index = d.Uint32()
	v.TimeoutNs = d.Varint()
	if d.Err() == nil && v.Index >= MaxIndex {
		d.fail("index")
	}
	return d.Done()
}

// NextReply says whether item Index exists (its ObjectID is
// Task.Return(Index)) or the stream ended before it.
type NextReply struct{ End bool }

func (v *NextReply) Encode(b []byte) []byte {
	if v.End {
		return append(b, 1)
	}
	return append(b, 0)
}

func (v *NextReply) Decode(b []byte) error {
	if len(b) != 1 || b[0] > 1 {
		return ErrMalformed
	}
	v.End = b[0] == 1
	return nil
}

// CancelRequest cancels the task that makes Ref.
type CancelRequest struct {
	Ref       Ref
	Force     bool
	Recursive bool
}

func (v *CancelRequest) Encode(b []byte) []byte {
	e := Encoder{B: b}
	e.Ref(v.Ref)
	var flags byte
	if v.Force {
		flags |= 1
	}
	if v.Recursive {
		flags |= 2
	}
	e.Byte(flags)
	return e.B
}

func (v *CancelRequest) Decode(b []byte) error {
	d := NewDecoder(b)
	v.Ref = d.Ref()
	flags := d.Byte()
	if d.Err() == nil && flags > 3 {
		d.fail("flags")
	}
	v.Force, v.Recursive = flags&1 != 0, flags&2 != 0
	return d.Done()
}

// GetActorRequest looks up a named actor.
type GetActorRequest struct{ Name, Namespace string }

func (v *GetActorRequest) Encode(b []byte) []byte {
	e := Encoder{B: b}
	e.String(v.Name)
	e.String(v.Namespace)
	return e.B
}

func (v *GetActorRequest) Decode(b []byte) error {
	d := NewDecoder(b)
	v.Name, v.Namespace = d.String(), d.String()
	return d.Done()
}

// ActorInfo names an actor: its ID, its owner and its class (the name its
// constructor is registered under).
type ActorInfo struct {
	Actor ids.TaskID
	Owner string
	Class string
}

func (v *ActorInfo) Encode(b []byte) []byte {
	e := Encoder{B: b}
	e.TaskID(v.Actor)
	e.String(v.Owner)
	e.String(v.Class)
	return e.B
}

func (v *ActorInfo) Decode(b []byte) error {
	d := NewDecoder(b)
	v.Actor, v.Owner, v.Class = d.TaskID(), d.String(), d.String()
	return d.Done()
}

// KillRequest ends an actor; NoRestart keeps it from restarting.
type KillRequest struct {
	Actor     ids.TaskID
	NoRestart bool
}

func (v *KillRequest) Encode(b []byte) []byte {
	e := Encoder{B: b}
	e.TaskID(v.Actor)
	e.Bool(v.NoRestart)
	return e.B
}

func (v *KillRequest) Decode(b []byte) error {
	d := NewDecoder(b)
	v.Actor = d.TaskID()
	flag := d.Byte()
	if d.Err() == nil && flag > 1 {
		d.fail("flag")
	}
	v.NoRestart = flag == 1
	return d.Done()
}

// ReleaseRequest gives back references the guest held (§5, release): for
// each object, how many of the references the host counted for the
// calling task (the returns of what it submitted, its puts, the refs
// inside the values it was given) it no longer holds.
type ReleaseRequest struct {
	IDs    []ids.ObjectID
	Counts []uint32 // one per ID, each at least 1
}

func (v *ReleaseRequest) Encode(b []byte) []byte {
	e := Encoder{B: b}
	e.Uvarint(uint64(len(v.IDs)))
	for i, id := range v.IDs {
		e.Raw(id[:])
		e.Uvarint(uint64(v.Counts[i]))
	}
	return e.B
}

func (v *ReleaseRequest) Decode(b []byte) error {
	d := NewDecoder(b)
	n := d.Count(ids.ObjectIDSize + 1)
	v.IDs, v.Counts = make([]ids.ObjectID, 0, n), make([]uint32, 0, n)
	for range n {
		id := d.ObjectID()
		c := d.Uvarint()
		if d.Err() == nil && (c == 0 || c > 1<<31) {
			d.fail("count")
		}
		v.IDs, v.Counts = append(v.IDs, id), append(v.Counts, uint32(c))
	}
	return d.Done()
}
