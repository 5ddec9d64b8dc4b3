// Package ipc is the framed protocol between a host and its worker
// processes, over a Unix socket pair the host creates when it starts the
// worker.
//
// A frame is a 4-byte little-endian length, a 1-byte type and the payload.
// Payloads use the encoding of package abi. Guest requests that need no reply
// (submit, put) are forwarded without waiting: a guest can submit thousands
// of tasks without a round trip each.
package ipc

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// MaxFrame bounds a frame's payload; larger frames are a protocol error.
const MaxFrame = 1 << 30

// ErrFrameTooLarge is returned for a frame above MaxFrame.
var ErrFrameTooLarge = errors.New("ipc: frame too large")

// Type is a frame's type.
type Type uint8

const (
	// host → worker
	TypeExec   Type = 1 // Exec
	TypeReply  Type = 2 // Reply
	TypeCancel Type = 3 // Cancel
	TypeLoad   Type = 4 // Load: compile a module ahead of its first task
	// TypeUnqueue asks for a task queued behind the running one back, if
	// it has not started (payload: Cancel). A worker answers TypeReturned,
	// or nothing if the task runs already (its Done follows).
	TypeUnqueue Type = 5
	// TypeReplyHead answers a call whose reply is large (BodyBytes or
	// more) with all of it but its body (payload: ReplyHead). The host
	// holds the body until the worker asks for it (TypeWantBody), once the
	// guest has memory for it: the worker then reads it from the socket
	// straight into guest memory, and nothing behind it waits meanwhile.
	// Sent only to a worker whose Ready names ReadyBody.
	TypeReplyHead Type = 6
	// TypeBody carries a body the worker asked for: the call's sequence
	// number (uvarint), then the body's bytes.
	TypeBody Type = 7

	// worker → host
	TypeReady Type = 10 // Ready
	TypeCall  Type = 11 // Call
	TypeDone  Type = 12 // Done
	TypeLog   Type = 13 // Log
	// TypeReturned gives back a task the worker was sent but never
	// started (payload: Cancel): it was queued behind another task and was
	// cancelled, asked back (TypeUnqueue), or the task ahead of it made a
	// blocking call. The host places it again; it costs no retry.
	TypeReturned Type = 14
	// TypeWantBody asks for the body of a TypeReplyHead, or lets the host
	// drop it (payload: WantBody). A worker answers every ReplyHead with
	// one, unless it exits.
	TypeWantBody Type = 15

	// Frames of the peer Execute stream only, never on a worker's socket:
	// a host running a task for another host (its owner) streams the
	// frames above with it, plus these. Their payloads are encoded by
	// host/internal/peerwire (docs/CLUSTER.md, "Peer protocol").
	TypePeerExec    Type = 100 // owner → executor: peerwire.ExecSpec, one attempt (or an actor's next call)
	TypePeerKill    Type = 101 // owner → executor: kill the worker (force cancel, timeout); no payload
	TypePeerOutcome Type = 102 // executor → owner: peerwire.Outcome, large values held there
	TypePeerRefused Type = 103 // executor → owner: the attempt did not start; why, as text
	// The Execute stream carries only batches (peer protocol 4): each holds
	// frames of the types above, of many attempts (links), each tagged with
	// its link; TypePeerEnd, inside a batch, ends one link.
	TypePeerBatch Type = 104 // both ways: peerwire.Sub frames, encoded one after the other
	TypePeerEnd   Type = 105 // both ways, inside a batch: the link ended; why, as text (empty: it just ended)
)

// ReadyPipeline is the capability a worker names on the first line of its
// Ready payload ("pid capability…") when it queues an Exec that comes
// while another runs and speaks TypeUnqueue and TypeReturned. A host
// queues tasks behind running ones only on such a worker.
const ReadyPipeline = "pipeline"

// ReadyBody is the capability a worker names when it speaks
// TypeReplyHead, TypeBody and TypeWantBody.
const ReadyBody = "body"

// BodyBytes: a reply whose tail is at least this large goes as a
// TypeReplyHead and a TypeBody, to a worker that speaks them.
const BodyBytes = 1 << 20

// ReadyHas reports whether a Ready payload names capability.
func ReadyHas(ready []byte, capability string) bool {
	first, _, _ := bytes.Cut(ready, []byte{'\n'})
	for _, f := range bytes.Fields(first)[min(1, len(bytes.Fields(first))):] {
		if string(f) == capability {
			return true
		}
	}
	return false
}

func (t Type) String() string {
	switch t {
	case TypeExec:
		return "exec"
	case TypeReply:
		return "reply"
	case TypeCancel:
		return "cancel"
	case TypeLoad:
		return "load"
	case TypeUnqueue:
		return "unqueue"
	case TypeReplyHead:
		return "reply_head"
	case TypeBody:
		return "body"
	case TypeWantBody:
		return "want_body"
	case TypeReady:
		return "ready"
	case TypeCall:
		return "call"
	case TypeDone:
		return "done"
	case TypeLog:
		return "log"
	case TypeReturned:
		return "returned"
	case TypePeerExec:
		return "peer_exec"
	case TypePeerKill:
		return "peer_kill"
	case TypePeerOutcome:
		return "peer_outcome"
	case TypePeerRefused:
		return "peer_refused"
	case TypePeerBatch:
		return "peer_batch"
	case TypePeerEnd:
		return "peer_end"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Conn reads and writes frames. Writes are safe for concurrent use; reads
// must come from one goroutine.
type Conn struct {
	r     *bufio.Reader
	wmu   sync.Mutex
	w     *bufio.Writer
	armed bool // a lazy flush is scheduled
	c     io.Closer
	hdr   [5]byte
}

// lazyFlushDelay bounds how long a buffered frame waits: a guest that
// submits and then computes for minutes still has its tasks start now.
const lazyFlushDelay = 100 * time.Microsecond

// NewConn wraps rw (a net.Conn or *os.File).
func NewConn(rw io.ReadWriteCloser) *Conn {
	return &Conn{r: bufio.NewReaderSize(rw, 64<<10), w: bufio.NewWriterSize(rw, 64<<10), c: rw}
}

// Close closes the underlying connection.
func (c *Conn) Close() error { return c.c.Close() }

// Read returns the next frame. The payload is read into buf if it fits
// (into a new buffer if not) and is valid until the next Read.
func (c *Conn) Read(buf []byte) (Type, []byte, error) {
	t, n, err := c.ReadHeader()
	if err != nil {
		return 0, nil, err
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if err := c.ReadFull(buf); err != nil {
		return 0, nil, err
	}
	return t, buf, nil
}

// ReadHeader reads the next frame's type and payload length, and nothing of
// the payload: the caller reads all n bytes with ReadFull and Discard
// (from any goroutine, one at a time) before the next ReadHeader or Read.
// A worker reads a large reply this way straight into guest memory.
func (c *Conn) ReadHeader() (Type, int, error) {
	if _, err := io.ReadFull(c.r, c.hdr[:]); err != nil {
		return 0, 0, err
	}
	n := binary.LittleEndian.Uint32(c.hdr[:4])
	if n > MaxFrame {
		return 0, 0, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
	}
	return Type(c.hdr[4]), int(n), nil
}

// ReadFull reads len(p) bytes of the current frame's payload into p.
func (c *Conn) ReadFull(p []byte) error {
	_, err := io.ReadFull(c.r, p)
	return err
}

// Discard skips n bytes of the current frame's payload.
func (c *Conn) Discard(n int) error {
	_, err := c.r.Discard(n)
	return err
}

// Write sends one frame and flushes it (with any frames buffered before).
func (c *Conn) Write(t Type, payload []byte) error { return c.write(t, payload, true) }

// Buffer queues a frame without flushing: the next Write (or a full buffer)
// sends it. Pipelined requests use it so that a guest submitting a thousand
// tasks costs one write to the socket, not a thousand, in the same order.
func (c *Conn) Buffer(t Type, payload []byte) error { return c.write(t, payload, false) }

// WriteCall sends a Call frame whose payload is m.Payload followed by tail,
// and flushes it: as Write(TypeCall, m.Encode(nil)) with tail appended to
// the payload, but neither the payload (without a tail) nor the tail (a
// large put) is copied into a new buffer first.
func (c *Conn) WriteCall(m *Call, tail []byte) error { return c.writeCall(m, tail, true) }

// BufferCall queues a Call frame as Buffer does, with tail as in
// WriteCall. Neither m.Payload nor tail is referenced once it returns.
func (c *Conn) BufferCall(m *Call, tail []byte) error { return c.writeCall(m, tail, false) }

// WriteReply sends a Reply frame whose payload is m.Payload followed by
// tail, and flushes it: as Write(TypeReply, m.Encode(nil)) with tail
// appended to the payload, without copying tail (a large value read back).
func (c *Conn) WriteReply(m *Reply, tail []byte) error {
	return c.write2(TypeReply, m.Encode(nil), tail, true)
}

// WriteBody sends the body of the reply to seq (a TypeBody frame),
// written from where it is, and flushes it.
func (c *Conn) WriteBody(seq uint64, body []byte) error {
	e := abi.Encoder{}
	e.Uvarint(seq)
	return c.write2(TypeBody, e.B, body, true)
}

// ReadBodySeq reads the sequence number at the start of a TypeBody
// frame's payload of n bytes (after ReadHeader), and returns it with the
// number of body bytes that follow it in the socket.
func (c *Conn) ReadBodySeq(n int) (seq uint64, rest int, err error) {
	var used int
	for shift := uint(0); ; shift += 7 {
		if used == n || shift > 63 {
			return 0, 0, fmt.Errorf("ipc: body: a bad sequence number")
		}
		b, err := c.r.ReadByte()
		if err != nil {
			return 0, 0, err
		}
		used++
		seq |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return seq, n - used, nil
		}
	}
}

func (c *Conn) writeCall(m *Call, tail []byte, flush bool) error {
	if tail == nil { // m.Payload is written from where it is
		return c.write2(TypeCall, (&Call{Seq: m.Seq, Task: m.Task, Op: m.Op}).Encode(nil), m.Payload, flush)
	}
	return c.write2(TypeCall, m.Encode(nil), tail, flush) // a small head and a large tail
}

func (c *Conn) write(t Type, payload []byte, flush bool) error {
	return c.write2(t, payload, nil, flush)
}

// write2 sends one frame whose payload is head then body.
func (c *Conn) write2(t Type, head, body []byte, flush bool) error {
	n := len(head) + len(body)
	if n > MaxFrame {
		return fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
	}
	var hdr [5]byte
	binary.LittleEndian.PutUint32(hdr[:4], uint32(n))
	hdr[4] = byte(t)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.w.Write(hdr[:])
	c.w.Write(head)
	if _, err := c.w.Write(body); err != nil {
		return err
	}
	if !flush {
		if !c.armed {
			c.armed = true
			time.AfterFunc(lazyFlushDelay, c.lazyFlush)
		}
		return nil
	}
	return c.w.Flush()
}

func (c *Conn) lazyFlush() {
	c.wmu.Lock()
	c.armed = false
	_ = c.w.Flush()
	c.wmu.Unlock()
}

// Exec asks a worker to run one invocation.
type Exec struct {
	Task       ids.TaskID
	ModulePath string // the module's file; its name is its sha256
	Invocation []byte // an encoded abi.Invocation
	Function   string
	// Limits of this task.
	MemoryPages    uint32 // 0: wazero's default (4 GiB)
	MaxResultBytes uint64 // the result, and each object it puts
	MaxArgBytes    uint64 // the arguments of each task it submits
	MaxLogBytes    uint64 // stdout and stderr together
	// Grants give the task a filesystem or environment: it then gets an
	// instance of its own, never reused.
	Grants abi.Grants
	// Actor is set for an actor's creation (the worker keeps the new
	// instance for it) and its method calls (which run on that instance).
	Actor       ids.TaskID
	ActorCreate bool
	// MaxConcurrency > 1 on a creation makes the actor's instance serve up
	// to that many calls at once (guest-sdk/ABI.md §5, "Concurrent
	// actors"); 0 or 1: one at a time.
	MaxConcurrency uint32
}

func (m *Exec) Encode(b []byte) []byte {
	e := abi.Encoder{B: b}
	e.TaskID(m.Task)
	e.String(m.ModulePath)
	e.String(m.Function)
	e.Uvarint(uint64(m.MemoryPages))
	e.Uvarint(m.MaxResultBytes)
	e.Uvarint(m.MaxArgBytes)
	e.Uvarint(m.MaxLogBytes)
	abi.EncodeGrants(&e, m.Grants)
	e.TaskID(m.Actor)
	e.Bool(m.ActorCreate)
	e.Uvarint(uint64(m.MaxConcurrency))
	e.Bytes(m.Invocation)
	return e.B
}

func (m *Exec) Decode(b []byte) error {
	d := abi.NewDecoder(b)
	m.Task = d.TaskID()
	m.ModulePath = d.String()
	m.Function = d.String()
	m.MemoryPages = d.Uint32()
	m.MaxResultBytes = d.Uvarint()
	m.MaxArgBytes = d.Uvarint()
	m.MaxLogBytes = d.Uvarint()
	m.Grants = abi.DecodeGrants(d)
	m.Actor = d.TaskID()
	m.ActorCreate = d.Byte() == 1
	m.MaxConcurrency = d.Uint32()
	m.Invocation = d.Bytes()
	return d.Done()
}

// Call is a guest request forwarded by the worker. Seq 0 wants no reply.
type Call struct {
	Seq     uint64
	Task    ids.TaskID
	Op      abi.Op
	Payload []byte // the guest's request, as the guest encoded it
}

func (m *Call) Encode(b []byte) []byte {
	e := abi.Encoder{B: b}
	e.Uvarint(m.Seq)
	e.TaskID(m.Task)
	e.Uvarint(uint64(m.Op))
	e.Raw(m.Payload)
	return e.B
}

func (m *Call) Decode(b []byte) error {
	d := abi.NewDecoder(b)
	m.Seq = d.Uvarint()
	m.Task = d.TaskID()
	m.Op = abi.Op(d.Uint32())
	m.Payload = d.Rest()
	return d.Err()
}

// Reply answers a Call. Code ≥ 0 is success; < 0 an abi.ErrCode.
type Reply struct {
	Seq     uint64
	Code    int64
	Payload []byte
}

func (m *Reply) Encode(b []byte) []byte {
	e := abi.Encoder{B: b}
	e.Uvarint(m.Seq)
	e.Varint(m.Code)
	e.Raw(m.Payload)
	return e.B
}

func (m *Reply) Decode(b []byte) error {
	d := abi.NewDecoder(b)
	m.Seq = d.Uvarint()
	m.Code = d.Varint()
	m.Payload = d.Rest()
	return d.Err()
}

// ReplyHead is a large reply without its body (TypeReplyHead): the reply's
// payload is Head followed by BodyLen bytes, sent as a TypeBody when asked.
type ReplyHead struct {
	Seq     uint64
	Code    int64
	BodyLen uint64
	Head    []byte
}

func (m *ReplyHead) Encode(b []byte) []byte {
	e := abi.Encoder{B: b}
	e.Uvarint(m.Seq)
	e.Varint(m.Code)
	e.Uvarint(m.BodyLen)
	e.Raw(m.Head)
	return e.B
}

func (m *ReplyHead) Decode(b []byte) error {
	d := abi.NewDecoder(b)
	m.Seq = d.Uvarint()
	m.Code = d.Varint()
	m.BodyLen = d.Uvarint()
	m.Head = d.Rest()
	if err := d.Err(); err != nil {
		return err
	}
	if m.BodyLen > MaxFrame {
		return fmt.Errorf("%w: a body of %d bytes", ErrFrameTooLarge, m.BodyLen)
	}
	return nil
}

// WantBody answers a ReplyHead: Send asks for its body (a TypeBody
// follows), !Send lets the host drop it.
type WantBody struct {
	Seq  uint64
	Send bool
}

func (m *WantBody) Encode(b []byte) []byte {
	e := abi.Encoder{B: b}
	e.Uvarint(m.Seq)
	e.Bool(m.Send)
	return e.B
}

func (m *WantBody) Decode(b []byte) error {
	d := abi.NewDecoder(b)
	m.Seq = d.Uvarint()
	m.Send = d.Byte() == 1
	return d.Done()
}

// Done reports the end of an Exec.
type Done struct {
	Task   ids.TaskID
	Status abi.Status
	// Result is the encoded abi.Result the guest sent (empty if it sent none).
	Result []byte
	// Trap is set when the instance trapped or could not run: the guest sent
	// no result and its instance was discarded.
	Trap string
	// Kind classifies Trap (abi.ErrorTrap, abi.ErrorBadRequest, abi.ErrorHost).
	Kind abi.ErrorKind
}

func (m *Done) Encode(b []byte) []byte {
	e := abi.Encoder{B: b}
	e.TaskID(m.Task)
	e.Varint(int64(m.Status))
	e.String(m.Trap)
	e.String(string(m.Kind))
	e.Bytes(m.Result)
	return e.B
}

func (m *Done) Decode(b []byte) error {
	d := abi.NewDecoder(b)
	m.Task = d.TaskID()
	m.Status = abi.Status(d.Varint())
	m.Trap = d.String()
	m.Kind = abi.ErrorKind(d.String())
	m.Result = d.Bytes()
	return d.Done()
}

// Log carries guest output.
type Log struct {
	Task   ids.TaskID
	Stream uint8 // 1 stdout, 2 stderr
	Data   []byte
}

func (m *Log) Encode(b []byte) []byte {
	e := abi.Encoder{B: b}
	e.TaskID(m.Task)
	e.Byte(m.Stream)
	e.Raw(m.Data)
	return e.B
}

func (m *Log) Decode(b []byte) error {
	d := abi.NewDecoder(b)
	m.Task = d.TaskID()
	m.Stream = d.Byte()
	m.Data = d.Rest()
	return d.Err()
}

// Cancel tells a worker its task was cancelled: blocking calls end at once.
type Cancel struct{ Task ids.TaskID }

func (m *Cancel) Encode(b []byte) []byte { return append(b, m.Task[:]...) }

func (m *Cancel) Decode(b []byte) error {
	d := abi.NewDecoder(b)
	m.Task = d.TaskID()
	return d.Done()
}

// Load asks a worker to compile a module now, for guests with the given
// memory limit, and to make an instance ready.
type Load struct {
	ModulePath  string
	MemoryPages uint32
}

func (m *Load) Encode(b []byte) []byte {
	e := abi.Encoder{B: b}
	e.Uvarint(uint64(m.MemoryPages))
	e.String(m.ModulePath)
	return e.B
}

func (m *Load) Decode(b []byte) error {
	d := abi.NewDecoder(b)
	m.MemoryPages = d.Uint32()
	m.ModulePath = string([]byte(d.String()))
	return d.Done()
}
