package abi

import "github.com/rayhost/rayhost/internal/ids"

// The ops of concurrent actors (guest-sdk/ABI.md §5, "Concurrent actors"),
// added within v1: a worker that predates them, or an instance that is not
// a concurrent actor's, answers ErrCodeUnknownOp, and the guest then runs
// its calls one at a time.
const (
	// OpStart carries a StartRequest: any guest op (but result) made on
	// behalf of one of the instance's running calls. A non-blocking op is
	// answered at once as if called directly; a blocking one (get, wait,
	// next, yield, get_actor, sleep) returns 0 at once and its outcome
	// comes later as a PollEvent of kind EventCompletion with its tag.
	OpStart Op = 14
	// OpPoll carries a PollRequest; reply PollEvent. It blocks the
	// instance until an event is there or the timeout passed.
	OpPoll Op = 15
	// OpDone carries a DoneRequest: the end of one call (its Result).
	OpDone Op = 16
)

// MaxStarted bounds the blocking ops an instance may have started and not
// yet polled the completion of, per call it runs: more is ErrCodeTooLarge.
const MaxStarted = 64

// StartRequest is op OpStart's request.
type StartRequest struct {
	Task    ids.TaskID // the call the op is made for
	Tag     uint32     // names the completion (blocking ops)
	Op      Op
	Payload []byte // Op's request
}

func (v *StartRequest) Encode(b []byte) []byte {
	e := Encoder{B: b}
	e.TaskID(v.Task)
	e.Uvarint(uint64(v.Tag))
	e.Uvarint(uint64(v.Op))
	e.Bytes(v.Payload)
	return e.B
}

func (v *StartRequest) Decode(b []byte) error {
	d := NewDecoder(b)
	v.Task = d.TaskID()
	v.Tag = d.Uint32()
	v.Op = Op(d.Uint32())
	v.Payload = d.Bytes()
	if d.Err() == nil && (v.Op < OpSubmit || v.Op > OpRelease || v.Op == OpResult) && v.Op != OpPutData {
		d.fail("op")
	}
	return d.Done()
}

// PollRequest is op OpPoll's request: wait up to TimeoutNs (< 0: no limit,
// 0: do not wait) for an event.
type PollRequest struct{ TimeoutNs int64 }

func (v *PollRequest) Encode(b []byte) []byte {
	e := Encoder{B: b}
	e.Varint(v.TimeoutNs)
	return e.B
}

func (v *PollRequest) Decode(b []byte) error {
	d := NewDecoder(b)
	v.TimeoutNs = d.Varint()
	return d.Done()
}

// EventKind says what a PollEvent reports.
type EventKind uint8

const (
	// EventCompletion: the started op Tag ended: Code ≥ 0 with its reply
	// in Data, or an ErrCode.
	EventCompletion EventKind = 1
	// EventInvoke: a new call; Data is its Invocation (kind 5).
	EventInvoke EventKind = 2
	// EventTimeout: nothing happened before the poll's timeout.
	EventTimeout EventKind = 3
	// EventCancel: call Task was cancelled (its context ends).
	EventCancel EventKind = 4
	// EventIdle: no call runs and none waits; rayhost_invoke must return
	// now (a later call starts a new invoke).
	EventIdle EventKind = 5
)

// PollEvent is op OpPoll's reply.
type PollEvent struct {
	Kind EventKind
	Tag  uint32
	Code int64
	Task ids.TaskID
	Data []byte
}

func (v *PollEvent) Encode(b []byte) []byte {
	e := Encoder{B: b}
	e.Byte(byte(v.Kind))
	e.Uvarint(uint64(v.Tag))
	e.Varint(v.Code)
	e.TaskID(v.Task)
	e.Bytes(v.Data)
	return e.B
}

func (v *PollEvent) Decode(b []byte) error {
	d := NewDecoder(b)
	v.Kind = EventKind(d.Byte())
	v.Tag = d.Uint32()
	v.Code = d.Varint()
	v.Task = d.TaskID()
	v.Data = d.Bytes()
	if d.Err() == nil && (v.Kind < EventCompletion || v.Kind > EventIdle) {
		d.fail("event kind")
	}
	return d.Done()
}

// DoneRequest is op OpDone's request: call Task ended with Status and
// Result (an encoded Result).
type DoneRequest struct {
	Task   ids.TaskID
	Status Status
	Result []byte
}

func (v *DoneRequest) Encode(b []byte) []byte {
	e := Encoder{B: b}
	e.TaskID(v.Task)
	e.Uvarint(uint64(v.Status))
	e.Bytes(v.Result)
	return e.B
}

func (v *DoneRequest) Decode(b []byte) error {
	d := NewDecoder(b)
	v.Task = d.TaskID()
	v.Status = Status(d.Uint32())
	v.Result = d.Bytes()
	if d.Err() == nil && v.Status > StatusBadRequest {
		d.fail("status")
	}
	if d.Err() == nil {
		var r Result
		if r.Decode(v.Result) != nil {
			d.fail("result")
		}
	}
	return d.Done()
}

func checkStart(b []byte) error { var m StartRequest; return m.Decode(b) }
func checkPoll(b []byte) error  { var m PollRequest; return m.Decode(b) }
func checkDone(b []byte) error  { var m DoneRequest; return m.Decode(b) }
