package abi

import (
	"github.com/rayhost/rayhost/internal/ids"
)

// Value is an encoded value and its codec.
type Value struct {
	Codec Codec
	Data  []byte
}

// Ref is an ObjectRef: an ObjectID and the address of its owner.
type Ref struct {
	ID    ids.ObjectID
	Owner string
}

// Arg is an argument of a submitted call: an inline value or a Ref.
type Arg struct {
	IsRef bool
	Ref   Ref
	Value Value
}

// Resources a task asks for. CPUs == -1 means "the default" (1 CPU).
type Resources struct {
	CPUs   float64  `json:"cpus"`
	GPUs   float64  `json:"gpus"`
	Custom []Custom `json:"custom,omitempty"`
}

// Custom is an amount of a named resource.
type Custom struct {
	Name   string  `json:"name"`
	Amount float64 `json:"amount"`
}

// Invocation is what the host asks of a module through ExportInvoke.
type Invocation struct {
	Kind     Kind
	Task     ids.TaskID
	Attempt  uint32
	Owner    string // the address of the host that owns what this task creates
	Function string
	Args     []Value    // ObjectRefs given directly as arguments arrive resolved
	Actor    ids.TaskID // for KindActorCreate and KindActorCall
}

// Encode appends the encoding of v to b.
func (v *Invocation) Encode(b []byte) []byte {
	e := Encoder{B: b}
	e.Byte(byte(v.Kind))
	e.TaskID(v.Task)
	e.Uvarint(uint64(v.Attempt))
	e.String(v.Owner)
	e.String(v.Function)
	e.Uvarint(uint64(len(v.Args)))
	for _, a := range v.Args {
		e.Value(a)
	}
	e.TaskID(v.Actor)
	return e.B
}

// Decode decodes b into v; v's byte slices alias b.
func (v *Invocation) Decode(b []byte) error {
	d := NewDecoder(b)
	v.Kind = Kind(d.Byte())
	v.Task = d.TaskID()
	v.Attempt = d.Uint32()
	v.Owner = d.String()
	v.Function = d.String()
	n := d.Count(2)
	v.Args = make([]Value, n)
	for i := range v.Args {
		v.Args[i] = d.Value()
	}
	v.Actor = d.TaskID()
	if d.Err() == nil && (v.Kind < KindCall || v.Kind > KindActorCall) {
		d.fail("kind")
	}
	return d.Done()
}

// Result carries the values an invocation returned, or a single CodecError
// value when it failed.
type Result struct{ Values []Value }

func (v *Result) Encode(b []byte) []byte { return (*GetReply)(v).Encode(b) }
func (v *Result) Decode(b []byte) error  { return (*GetReply)(v).Decode(b) }

func encodeRefs(e *Encoder, refs []Ref) {
	e.Uvarint(uint64(len(refs)))
	for _, r := range refs {
		e.Ref(r)
	}
}

func decodeRefs(d *Decoder) []Ref {
	n := d.Count(ids.ObjectIDSize + 1)
	refs := make([]Ref, n)
	for i := range refs {
		refs[i] = d.Ref()
	}
	return refs
}

// Description is the reply to a KindDescribe invocation, as one JSON value.
type Description struct {
	ABI       int            `json:"abi"`
	Functions []FunctionInfo `json:"functions"`
	HasMain   bool           `json:"has_main"`
	// Error reports a registration mistake (a duplicate name…) that makes the
	// module unusable.
	Error string `json:"error,omitempty"`
	// Codecs names the codecs beyond json, raw and error that the module's
	// guests decode ("ints"); the host gives its guests every other value
	// as JSON. Added within v1: a module that predates it lists none.
	Codecs []string `json:"codecs,omitempty"`
}

// Speaks reports whether the module's guests decode values of codec c.
func (d *Description) Speaks(c Codec) bool {
	if c <= CodecError {
		return true
	}
	for _, name := range d.Codecs {
		if name == c.String() {
			return true
		}
	}
	return false
}

// FunctionInfo describes one registered remote function.
type FunctionInfo struct {
	Name       string `json:"name"`
	NumArgs    int    `json:"num_args"`
	NumReturns int    `json:"num_returns"`
	Generator  bool   `json:"generator,omitempty"`
	// Actor is set for an actor's constructor ("class") and its methods
	// ("method", named Class.Method).
	Actor string `json:"actor,omitempty"`
	// Defaults are the options given at registration; a client's call
	// starts from them (a guest's Remote applies them itself).
	Defaults CallOptions `json:"defaults"`
}

// DecodeValue decodes a lone Value (the payload of OpYield).
func DecodeValue(b []byte) (Value, error) {
	d := NewDecoder(b)
	v := d.Value()
	return v, d.Done()
}

// EncodeValue encodes a lone Value.
func EncodeValue(b []byte, v Value) []byte {
	e := Encoder{B: b}
	e.Value(v)
	return e.B
}
