package peerwire

import (
	"fmt"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/ipc"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// ErrMalformed: a payload that does not decode as its frame's message.
var ErrMalformed = abi.ErrMalformed

// Held describes a value by where its bytes are rather than by its bytes:
// the Data of an abi.CodecHeld value.
type Held struct {
	Codec   abi.Codec // the value's own codec (json or raw)
	Size    int64
	Holders []string // API addresses of hosts that hold the bytes
}

// Encode appends h to b.
func (h Held) Encode(b []byte) []byte {
	e := abi.Encoder{B: b}
	e.Byte(byte(h.Codec))
	e.Varint(h.Size)
	e.Uvarint(uint64(len(h.Holders)))
	for _, s := range h.Holders {
		e.String(s)
	}
	return e.B
}

// Value is h as a value of codec abi.CodecHeld.
func (h Held) Value() abi.Value { return abi.Value{Codec: abi.CodecHeld, Data: h.Encode(nil)} }

// DecodeHeld decodes a Held (the Data of an abi.CodecHeld value).
func DecodeHeld(b []byte) (Held, error) {
	d := abi.NewDecoder(b)
	var v Held
	v.Codec = abi.Codec(d.Byte())
	v.Size = d.Varint()
	n := d.Count(1)
	for range n {
		v.Holders = append(v.Holders, d.String())
	}
	if err := d.Done(); err != nil {
		return v, err
	}
	if !v.Codec.Valid() || v.Codec == abi.CodecError {
		return v, fmt.Errorf("%w: held value: bad codec %d", ErrMalformed, v.Codec)
	}
	return v, nil
}

// EncodeValues and DecodeValues carry values that may be held
// (abi.CodecHeld), which abi.Result refuses.
func EncodeValues(e *abi.Encoder, vals []abi.Value) {
	e.Uvarint(uint64(len(vals)))
	for _, v := range vals {
		e.Byte(byte(v.Codec))
		e.Bytes(v.Data)
	}
}

// DecodeValues reads what EncodeValues wrote; the values own their bytes.
func DecodeValues(d *abi.Decoder) []abi.Value {
	n := d.Count(1)
	out := make([]abi.Value, 0, n)
	for range n {
		c := abi.Codec(d.Byte())
		data := d.Bytes()
		if c == abi.CodecInts && len(data)%8 != 0 {
			d.Fail("ints value (a length not a multiple of 8)")
			return nil
		}
		out = append(out, abi.Value{Codec: c, Data: append([]byte(nil), data...)})
	}
	return out
}

// ExecSpec is the payload of ipc.TypePeerExec: everything an executor needs
// to run one attempt of a task.
type ExecSpec struct {
	Task       ids.TaskID
	Attempt    uint32
	Kind       abi.Kind
	Function   string
	Module     string // digest; fetched from the owner if missing
	Owner      string // the owner's API address (ObjectRefs the guest makes name it)
	OwnerID    string
	NumReturns uint32
	Req        scheduler.Resources
	Limits     abi.Limits
	Grants     abi.Grants
	// Args are inline values, or (abi.CodecHeld) where to pull them from.
	Args []abi.Value
	// ArgIDs name the held arguments (zero for inline ones).
	ArgIDs []ids.ObjectID
	// Actor is set for an actor's creation and its calls, which all travel
	// on the creation's stream and run on the worker it bound; HoldCPU: the
	// actor keeps its resources while it lives.
	Actor   ids.TaskID
	HoldCPU bool
}

// Encode returns s's encoding.
func (s *ExecSpec) Encode() []byte {
	e := abi.Encoder{}
	e.TaskID(s.Task)
	e.Uvarint(uint64(s.Attempt))
	e.Byte(byte(s.Kind))
	e.String(s.Function)
	e.String(s.Module)
	e.String(s.Owner)
	e.String(s.OwnerID)
	e.Uvarint(uint64(s.NumReturns))
	e.Varint(s.Req.CPU)
	e.Varint(s.Req.GPU)
	e.Uvarint(uint64(len(s.Req.Custom)))
	for _, a := range s.Req.Custom {
		e.String(a.Name)
		e.Varint(a.Units)
	}
	e.Uvarint(uint64(s.Limits.MemoryPages))
	e.Varint(s.Limits.TimeoutNs)
	abi.EncodeGrants(&e, s.Grants)
	EncodeValues(&e, s.Args)
	for i := range s.Args {
		var id ids.ObjectID // zero for inline arguments (ObjectID refuses it)
		if i < len(s.ArgIDs) {
			id = s.ArgIDs[i]
		}
		e.Bytes(id[:])
	}
	e.TaskID(s.Actor)
	e.Bool(s.HoldCPU)
	return e.B
}

// DecodeExecSpec decodes an ipc.TypePeerExec payload.
func DecodeExecSpec(b []byte) (*ExecSpec, error) {
	d := abi.NewDecoder(b)
	s := &ExecSpec{}
	s.Task = d.TaskID()
	s.Attempt = d.Uint32()
	s.Kind = abi.Kind(d.Byte())
	s.Function = d.String()
	s.Module = d.String()
	s.Owner = d.String()
	s.OwnerID = d.String()
	s.NumReturns = d.Uint32()
	s.Req.CPU = d.Varint()
	s.Req.GPU = d.Varint()
	n := d.Count(2)
	for range n {
		s.Req.Custom = append(s.Req.Custom, scheduler.Amount{Name: d.String(), Units: d.Varint()})
	}
	s.Limits.MemoryPages = d.Uint32()
	s.Limits.TimeoutNs = d.Varint()
	s.Grants = abi.DecodeGrants(d)
	s.Args = DecodeValues(d)
	s.ArgIDs = make([]ids.ObjectID, len(s.Args))
	for i := range s.ArgIDs {
		b := d.Bytes()
		if len(b) != len(s.ArgIDs[i]) {
			return nil, fmt.Errorf("%w: exec: argument %d: bad object id", ErrMalformed, i+1)
		}
		copy(s.ArgIDs[i][:], b)
	}
	s.Actor = d.TaskID()
	s.HoldCPU = d.Byte() == 1
	if err := d.Done(); err != nil {
		return nil, err
	}
	if s.NumReturns > abi.MaxIndex {
		return nil, fmt.Errorf("%w: exec: %d returns", ErrMalformed, s.NumReturns)
	}
	return s, nil
}

// Outcome is the payload of ipc.TypePeerOutcome: how an attempt ended, its
// values inline or (abi.CodecHeld) held by the executor.
type Outcome struct {
	Task   ids.TaskID
	Status abi.Status
	Values []abi.Value
}

// Encode returns o's encoding.
func (o *Outcome) Encode() []byte {
	e := abi.Encoder{}
	e.TaskID(o.Task)
	e.Byte(byte(o.Status))
	EncodeValues(&e, o.Values)
	return e.B
}

// DecodeOutcome decodes an ipc.TypePeerOutcome payload.
func DecodeOutcome(b []byte) (*Outcome, error) {
	d := abi.NewDecoder(b)
	o := &Outcome{}
	o.Task = d.TaskID()
	o.Status = abi.Status(d.Byte())
	o.Values = DecodeValues(d)
	if err := d.Done(); err != nil {
		return nil, err
	}
	return o, nil
}

// PutHeld is the payload of an abi.OpPutHeld call: a put whose bytes the
// executor kept.
type PutHeld struct {
	ID   ids.ObjectID
	Held []byte // an encoded Held
}

// Encode returns p's encoding.
func (p *PutHeld) Encode() []byte {
	e := abi.Encoder{}
	e.Raw(p.ID[:])
	e.Bytes(p.Held)
	return e.B
}

// DecodePutHeld decodes an abi.OpPutHeld payload; Held aliases b.
func DecodePutHeld(b []byte) (PutHeld, error) {
	d := abi.NewDecoder(b)
	p := PutHeld{ID: d.ObjectID(), Held: d.Bytes()}
	return p, d.Done()
}

// Sub is one frame of one link inside an ipc.TypePeerBatch frame: the
// Execute stream between two hosts carries every task attempt one of them
// runs for the other as a link, and batches their frames (docs/CLUSTER.md,
// "Peer protocol").
type Sub struct {
	// Link names the attempt (an actor's creation and its calls share
	// one); never 0. The owner numbers its links in increasing order.
	Link    uint64
	Type    ipc.Type
	Payload []byte
}

// AppendSub appends s's encoding to b: a batch frame's payload is
// encoded subs, one after the other.
func AppendSub(b []byte, s Sub) []byte {
	e := abi.Encoder{B: b}
	e.Uvarint(s.Link)
	e.Byte(byte(s.Type))
	e.Bytes(s.Payload)
	return e.B
}

// DecodeBatch decodes the payload of an ipc.TypePeerBatch frame: at
// least one sub, each naming a link. The payloads alias b.
func DecodeBatch(b []byte) ([]Sub, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: batch: empty", ErrMalformed)
	}
	d := abi.NewDecoder(b)
	var out []Sub
	for d.Len() > 0 {
		s := Sub{Link: d.Uvarint(), Type: ipc.Type(d.Byte()), Payload: d.Bytes()}
		if err := d.Err(); err != nil {
			return nil, fmt.Errorf("batch: frame %d: %w", len(out)+1, err)
		}
		if s.Link == 0 {
			return nil, fmt.Errorf("%w: batch: frame %d: link 0", ErrMalformed, len(out)+1)
		}
		out = append(out, s)
	}
	return out, nil
}
