// This file holds SubmitRequest, the guest's request to run a task, and
// what it carries: resources, scheduling, limits, grants, retry modes, and
// CallOptions (a call's options as a module describes them).

package abi

import (
	"math"

	"github.com/rayhost/rayhost/internal/ids"
)

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
	// For KindActorCreate: Detached opts the actor out of fate-sharing
	// with its owner (flags bit 2); MaxConcurrency > 1 lets that many of
	// its calls run at once (travels after Scheduling, only when > 1).
	// Both were added within v1 (ABI.md §5, "Actor lifetime").
	Detached       bool
	MaxConcurrency uint32
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
	if v.Detached {
		flags |= 4
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
	if v.Scheduling != (Scheduling{}) || v.MaxConcurrency > 1 {
		v.Scheduling.encode(&e)
	}
	if v.MaxConcurrency > 1 {
		e.Uvarint(uint64(v.MaxConcurrency))
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
	if d.Err() == nil && flags > 7 {
		d.fail("flags")
	}
	v.Generator, v.NoEvents, v.Detached = flags&1 != 0, flags&2 != 0, flags&4 != 0
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
	v.MaxConcurrency = 0
	if d.Err() == nil && d.Len() > 0 {
		v.MaxConcurrency = d.Uint32()
		if d.Err() == nil && (v.MaxConcurrency < 2 || v.MaxConcurrency > MaxConcurrency) {
			d.fail("max concurrency")
		}
	}
	return d.Done()
}

// ValidCPUs reports whether a requested CPU amount is acceptable: the default
// marker -1, or a finite amount that is not negative.
func ValidCPUs(c float64) bool {
	return c == -1 || (c >= 0 && !math.IsInf(c, 0) && !math.IsNaN(c))
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
