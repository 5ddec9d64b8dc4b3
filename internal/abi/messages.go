package abi

import (
	"math"

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

// SubmitRequest asks the host to run a remote function of the caller's module.
// The guest derives Task from its own TaskID (ids.TaskID.Child), so it knows
// the ObjectIDs of the returns without waiting for a reply.
type SubmitRequest struct {
	Task       ids.TaskID
	Function   string
	NumReturns uint32
	Resources  Resources
	// MaxRetries is how often a system failure (the worker died) is retried:
	// -1 without limit, 0 never.
	MaxRetries int32
	// Retry says whether application errors are retried too: RetryNone,
	// RetryAll, or RetryListed (errors whose kind or code is in RetryOn).
	Retry   RetryMode
	RetryOn []string
	// Generator: the function yields items; Backpressure > 0 pauses it while
	// that many items wait unconsumed.
	Generator    bool
	Backpressure uint32
	// NoEvents turns task events off for this task.
	NoEvents bool
	Limits   Limits
	Grants   Grants
	// Kind is KindCall (or 0, which means the same), KindActorCreate (Task
	// is then the actor's ID) or KindActorCall (on Actor).
	Kind  Kind
	Actor ids.TaskID
	// For KindActorCreate: restarts after its worker dies (-1: no limit),
	// retries of a method call cut short by that, and an optional name.
	MaxRestarts, MaxTaskRetries int32
	Name, Namespace             string
	Args                        []Arg
	// Scheduling places the task in a cluster. It travels last and may be
	// missing (guests built before it existed): then it is the default.
	Scheduling Scheduling
}

// Scheduling is a scheduling strategy: Spread over the least loaded hosts,
// or run on the host named NodeID (Soft: elsewhere if it is gone or can
// never fit the task). The zero value is Ray's default hybrid policy.
type Scheduling struct {
	Spread bool   `json:"spread,omitempty"`
	NodeID string `json:"node_id,omitempty"`
	Soft   bool   `json:"soft,omitempty"`
}

func (s Scheduling) encode(e *Encoder) {
	var flags byte
	if s.Spread {
		flags |= 1
	}
	if s.Soft {
		flags |= 2
	}
	e.Byte(flags)
	e.String(s.NodeID)
}

func (s *Scheduling) decode(d *Decoder) {
	flags := d.Byte()
	if d.Err() == nil && flags > 3 {
		d.fail("scheduling flags")
	}
	s.Spread, s.Soft = flags&1 != 0, flags&2 != 0
	s.NodeID = d.String()
	if d.Err() == nil && (len(s.NodeID) > 255 || (s.Soft && s.NodeID == "")) {
		d.fail("scheduling node")
	}
}

// Limits bound one task; zero fields take the host's defaults.
type Limits struct {
	MemoryPages uint32 `json:"memory_pages,omitempty"` // 64 KiB pages of guest memory
	TimeoutNs   int64  `json:"timeout_ns,omitempty"`   // wall clock, from the start of each attempt
}

// Grants are the capabilities a task receives beyond the host functions:
// directories (within the roots the host allows) and environment variables.
type Grants struct {
	Mounts []Mount `json:"mounts,omitempty"`
	Env    []KV    `json:"env,omitempty"`
}

// Mount makes the host directory Host visible to the guest at Guest.
type Mount struct {
	Host     string `json:"host"`
	Guest    string `json:"guest"`
	ReadOnly bool   `json:"read_only"`
}

// KV is one environment variable.
type KV struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Empty reports whether g grants nothing.
func (g Grants) Empty() bool { return len(g.Mounts) == 0 && len(g.Env) == 0 }

func (g Grants) encode(e *Encoder) {
	e.Uvarint(uint64(len(g.Mounts)))
	for _, m := range g.Mounts {
		e.String(m.Host)
		e.String(m.Guest)
		if m.ReadOnly {
			e.Byte(1)
		} else {
			e.Byte(0)
		}
	}
	e.Uvarint(uint64(len(g.Env)))
	for _, kv := range g.Env {
		e.String(kv.Name)
		e.String(kv.Value)
	}
}

func (g *Grants) decode(d *Decoder) {
	g.Mounts, g.Env = nil, nil
	for range d.Count(3) {
		m := Mount{Host: d.String(), Guest: d.String()}
		switch d.Byte() {
		case 0:
		case 1:
			m.ReadOnly = true
		default:
			d.fail("mount mode")
		}
		g.Mounts = append(g.Mounts, m)
	}
	for range d.Count(2) {
		g.Env = append(g.Env, KV{Name: d.String(), Value: d.String()})
	}
}

// EncodeGrants and DecodeGrants carry Grants in other messages (ipc).
func EncodeGrants(e *Encoder, g Grants) { g.encode(e) }
func DecodeGrants(d *Decoder) Grants {
	var g Grants
	g.decode(d)
	return g
}

// RetryMode says which application errors are retried.
type RetryMode uint8

const (
	RetryNone   RetryMode = 0
	RetryAll    RetryMode = 1
	RetryListed RetryMode = 2
)

func (v *SubmitRequest) Encode(b []byte) []byte {
	e := Encoder{B: b}
	e.TaskID(v.Task)
	e.String(v.Function)
	e.Uvarint(uint64(v.NumReturns))
	e.Float(v.Resources.CPUs)
	e.Float(v.Resources.GPUs)
	e.Uvarint(uint64(len(v.Resources.Custom)))
	for _, c := range v.Resources.Custom {
		e.String(c.Name)
		e.Float(c.Amount)
	}
	e.Varint(int64(v.MaxRetries))
	e.Byte(byte(v.Retry))
	e.Uvarint(uint64(len(v.RetryOn)))
	for _, k := range v.RetryOn {
		e.String(k)
	}
	var flags byte
	if v.Generator {
		flags |= 1
	}
	if v.NoEvents {
		flags |= 2
	}
	e.Byte(flags)
	e.Uvarint(uint64(v.Backpressure))
	e.Uvarint(uint64(v.Limits.MemoryPages))
	e.Varint(v.Limits.TimeoutNs)
	v.Grants.encode(&e)
	e.Byte(byte(v.Kind))
	e.TaskID(v.Actor)
	e.Varint(int64(v.MaxRestarts))
	e.Varint(int64(v.MaxTaskRetries))
	e.String(v.Name)
	e.String(v.Namespace)
	e.Uvarint(uint64(len(v.Args)))
	for _, a := range v.Args {
		if a.IsRef {
			e.Byte(1)
			e.Ref(a.Ref)
		} else {
			e.Byte(0)
			e.Value(a.Value)
		}
	}
	if v.Scheduling != (Scheduling{}) {
		v.Scheduling.encode(&e)
	}
	return e.B
}

func (v *SubmitRequest) Decode(b []byte) error {
	d := NewDecoder(b)
	v.Task = d.TaskID()
	v.Function = d.String()
	v.NumReturns = d.Uint32()
	if d.Err() == nil && v.NumReturns >= MaxIndex {
		d.fail("num returns")
	}
	v.Resources.CPUs = d.Float()
	v.Resources.GPUs = d.Float()
	n := d.Count(9)
	v.Resources.Custom = nil
	if n > 0 {
		v.Resources.Custom = make([]Custom, n)
		for i := range v.Resources.Custom {
			v.Resources.Custom[i] = Custom{Name: d.String(), Amount: d.Float()}
		}
	}
	retries := d.Varint()
	if d.Err() == nil && (retries < -1 || retries > 1<<30) {
		d.fail("max retries")
	}
	v.MaxRetries = int32(retries)
	v.Retry = RetryMode(d.Byte())
	if d.Err() == nil && v.Retry > RetryListed {
		d.fail("retry mode")
	}
	n = d.Count(1)
	v.RetryOn = nil
	for range n {
		v.RetryOn = append(v.RetryOn, d.String())
	}
	flags := d.Byte()
	if d.Err() == nil && flags > 3 {
		d.fail("flags")
	}
	v.Generator, v.NoEvents = flags&1 != 0, flags&2 != 0
	v.Backpressure = d.Uint32()
	v.Limits.MemoryPages = d.Uint32()
	v.Limits.TimeoutNs = d.Varint()
	if d.Err() == nil && v.Limits.TimeoutNs < 0 {
		d.fail("timeout")
	}
	v.Grants.decode(d)
	v.Kind = Kind(d.Byte())
	v.Actor = d.TaskID()
	restarts, taskRetries := d.Varint(), d.Varint()
	if d.Err() == nil && (restarts < -1 || restarts > MaxIndex || taskRetries < -1 || taskRetries > MaxIndex) {
		d.fail("actor retries")
	}
	v.MaxRestarts, v.MaxTaskRetries = int32(restarts), int32(taskRetries)
	v.Name, v.Namespace = d.String(), d.String()
	if d.Err() == nil && v.Kind != 0 && v.Kind != KindCall && v.Kind != KindActorCreate && v.Kind != KindActorCall {
		d.fail("kind")
	}
	n = d.Count(3)
	v.Args = make([]Arg, n)
	for i := range v.Args {
		switch d.Byte() {
		case 0:
			v.Args[i] = Arg{Value: d.Value()}
		case 1:
			v.Args[i] = Arg{IsRef: true, Ref: d.Ref()}
		default:
			d.fail("arg kind")
		}
	}
	v.Scheduling = Scheduling{}
	if d.Err() == nil && d.Len() > 0 {
		v.Scheduling.decode(d)
	}
	return d.Done()
}

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

// Result carries the values an invocation returned, or a single CodecError
// value when it failed.
type Result struct{ Values []Value }

func (v *Result) Encode(b []byte) []byte { return (*GetReply)(v).Encode(b) }
func (v *Result) Decode(b []byte) error  { return (*GetReply)(v).Decode(b) }

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

// ValidCPUs reports whether a requested CPU amount is acceptable: the default
// marker -1, or a finite amount that is not negative.
func ValidCPUs(c float64) bool {
	return c == -1 || (c >= 0 && !math.IsInf(c, 0) && !math.IsNaN(c))
}

// Description is the reply to a KindDescribe invocation, as one JSON value.
type Description struct {
	ABI       int            `json:"abi"`
	Functions []FunctionInfo `json:"functions"`
	HasMain   bool           `json:"has_main"`
	// Error reports a registration mistake (a duplicate name…) that makes the
	// module unusable.
	Error string `json:"error,omitempty"`
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

// CallOptions are a call's options, as SubmitRequest carries them.
type CallOptions struct {
	Resources    Resources  `json:"resources"`
	MaxRetries   int32      `json:"max_retries"`
	Retry        RetryMode  `json:"retry,omitempty"`
	RetryOn      []string   `json:"retry_on,omitempty"`
	Backpressure uint32     `json:"backpressure,omitempty"`
	NoEvents     bool       `json:"no_events,omitempty"`
	Limits       Limits     `json:"limits"`
	Grants       Grants     `json:"grants"`
	Scheduling   Scheduling `json:"scheduling,omitzero"`
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
	if v.NoRestart {
		e.Byte(1)
	} else {
		e.Byte(0)
	}
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
