package workerpool

import (
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/rayhost/rayhost/host/internal/launch"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/clock"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/ipc"
)

// stopGrace is how long Stop lets a worker exit after closing its socket
// before it kills it.
const stopGrace = time.Second

// state is where a worker is in the pool (guarded by Pool.mu).
type state uint8

const (
	stateHello    state = iota // its Ready is being handled (counts as starting)
	stateBusy                  // in use (taken, or kept by the handler)
	stateIdle                  // on the idle list
	stateStopping              // reaped: killed, not exited yet
	stateGone                  // exited, out of the pool's tables
)

// Worker is one worker process of a pool. Its methods are safe for
// concurrent use; frames written concurrently go out whole, in some order.
type Worker struct {
	// Value is the handler's own state for the worker, set and read under
	// the handler's lock (the pool never touches it). Set it in
	// Handler.Ready before the worker is made idle, and it is there for
	// every later Frame and for Exited.
	Value any

	proc  launch.Process
	conn  *ipc.Conn
	pid   int
	clock clock.Clock

	// bodies holds the bodies of large replies sent as a TypeReplyHead
	// until the worker asks for them or lets them go (TypeWantBody), by
	// call sequence number; nil if the worker does not speak them.
	bodyMu    sync.Mutex
	bodies    map[uint64][]byte
	bodyBytes int64 // of bodies
	// bodySends queues the bodies asked for to the goroutine that writes
	// them (bodyWriter); bounded, so a worker that asks and never reads
	// is a protocol error, not a growing queue. Sent to and closed only by
	// the goroutine serving the worker's frames.
	bodySends  chan bodySend
	bodyWriter sync.WaitGroup

	// Guarded by Pool.mu.
	state     state
	idleSince time.Time
}

// PID is the worker's process id (0 for an in-process worker).
func (w *Worker) PID() int { return w.pid }

// Exec sends a task to run; the error wraps ErrGone.
func (w *Worker) Exec(m *ipc.Exec) error {
	return w.Send(ipc.TypeExec, m.Encode(nil))
}

// QueueExec sends the worker a task as Exec does, buffered: the next frame
// written to the worker (or ipc's lazy flush) carries it, so that the
// tasks of a worker's pipeline cost one write.
func (w *Worker) QueueExec(m *ipc.Exec) error {
	if err := w.conn.Buffer(ipc.TypeExec, m.Encode(nil)); err != nil {
		return fmt.Errorf("%w: %w", ErrGone, err)
	}
	return nil
}

// Cancel asks the worker to cancel the task it runs, if it is task.
func (w *Worker) Cancel(task ids.TaskID) {
	m := ipc.Cancel{Task: task}
	_ = w.Send(ipc.TypeCancel, m.Encode(nil))
}

// Unqueue asks the worker for task back if it is queued there and has not
// started: the worker answers with an ipc.TypeReturned frame, or with
// nothing if it runs already.
func (w *Worker) Unqueue(task ids.TaskID) {
	m := ipc.Cancel{Task: task}
	_ = w.Send(ipc.TypeUnqueue, m.Encode(nil))
}

// Load asks the worker to compile a module ahead of its first task, for a
// memory limit of memoryPages.
func (w *Worker) Load(path string, memoryPages uint32) {
	m := ipc.Load{ModulePath: path, MemoryPages: memoryPages}
	_ = w.Send(ipc.TypeLoad, m.Encode(nil))
}

// Reply answers the guest call seq.
func (w *Worker) Reply(seq uint64, code int64, payload []byte) {
	m := ipc.Reply{Seq: seq, Code: code, Payload: payload}
	_ = w.Send(ipc.TypeReply, m.Encode(nil))
}

// MaxHeldBodies and MaxHeldBodyBytes bound the large replies' bodies a
// worker has not let go yet; beyond them a large reply is sent whole, as to
// a worker that does not speak bodies.
const (
	MaxHeldBodies    = 16
	MaxHeldBodyBytes = 2 << 30
)

type bodySend struct {
	seq  uint64
	tail []byte
}

// speakBodies makes w hold large replies' bodies (its Ready named
// ipc.ReadyBody) and starts the goroutine that writes them.
func (w *Worker) speakBodies() {
	w.bodies = map[uint64][]byte{}
	w.bodySends = make(chan bodySend, 2*MaxHeldBodies)
	w.bodyWriter.Go(func() {
		for b := range w.bodySends {
			_ = w.conn.WriteBody(b.seq, b.tail) // gone: Exited follows
		}
	})
}

// ReplyTail answers the guest call seq with payload followed by tail, which
// is written from where it is (a large value). A large tail is held and
// sent when the worker asks for it (ipc.TypeReplyHead), if it speaks that.
// A reply too large for a frame fails the call (ErrCodeTooLarge).
func (w *Worker) ReplyTail(seq uint64, code int64, payload, tail []byte) {
	if len(tail) >= ipc.BodyBytes && w.holdBody(seq, tail) {
		head := ipc.ReplyHead{Seq: seq, Code: code, BodyLen: uint64(len(tail)), Head: payload}
		_ = w.conn.Write(ipc.TypeReplyHead, head.Encode(nil)) // gone: Exited follows
		return
	}
	if len(payload)+len(tail)+2*binary.MaxVarintLen64 > ipc.MaxFrame {
		w.Reply(seq, int64(abi.ErrCodeTooLarge), nil)
		return
	}
	_ = w.conn.WriteReply(&ipc.Reply{Seq: seq, Code: code, Payload: payload}, tail) // gone: Exited follows
}

// holdBody keeps tail as the body of seq's reply, if the worker speaks
// bodies (and has not exited), holds less than the bounds, and the body's
// frame fits in one.
func (w *Worker) holdBody(seq uint64, tail []byte) bool {
	w.bodyMu.Lock()
	defer w.bodyMu.Unlock()
	if w.bodies == nil || len(w.bodies) >= MaxHeldBodies || w.bodyBytes+int64(len(tail)) > MaxHeldBodyBytes ||
		len(tail)+binary.MaxVarintLen64 > ipc.MaxFrame || w.bodies[seq] != nil {
		return false
	}
	w.bodies[seq] = tail
	w.bodyBytes += int64(len(tail))
	return true
}

// wantBody serves a TypeWantBody: the body asked for is sent (and kept: a
// guest may recv a reply again until its next call), or dropped. A body
// the worker was never sent, or let go already, is a protocol error.
//
// It runs on the goroutine that reads the worker's frames, which must not
// wait for the worker: the body is written by the worker's body writer
// (the worker matches it by sequence number). A worker that asks for more
// than that writer's queue holds (it asks and does not read) is a
// protocol error.
func (w *Worker) wantBody(payload []byte) error {
	var m ipc.WantBody
	if err := m.Decode(payload); err != nil {
		return fmt.Errorf("%w: want_body: %w", ErrProtocol, err)
	}
	w.bodyMu.Lock()
	tail, ok := w.bodies[m.Seq]
	if ok && !m.Send {
		delete(w.bodies, m.Seq)
		w.bodyBytes -= int64(len(tail))
	}
	w.bodyMu.Unlock()
	if !ok {
		return fmt.Errorf("%w: want_body of call %d, which has no body held", ErrProtocol, m.Seq)
	}
	if m.Send {
		select {
		case w.bodySends <- bodySend{m.Seq, tail}:
		default:
			return fmt.Errorf("%w: want_body: more than %d bodies asked for and not read", ErrProtocol, cap(w.bodySends))
		}
	}
	return nil
}

// heldBodies reports how many bodies, of how many bytes, are held.
func (w *Worker) heldBodies() (int, int64) {
	w.bodyMu.Lock()
	defer w.bodyMu.Unlock()
	return len(w.bodies), w.bodyBytes
}

// dropBodies forgets the held bodies once the worker is gone, holds no
// more, and waits for the body writer to end (its writes fail: the socket
// is closed). Called by the goroutine that served the worker's frames.
func (w *Worker) dropBodies() {
	w.bodyMu.Lock()
	w.bodies, w.bodyBytes = nil, 0
	w.bodyMu.Unlock()
	if w.bodySends != nil {
		close(w.bodySends)
		w.bodyWriter.Wait()
	}
}

// Send writes one frame as it is (a frame relayed from another host); the
// error wraps ErrGone.
func (w *Worker) Send(typ ipc.Type, payload []byte) error {
	if err := w.conn.Write(typ, payload); err != nil {
		return fmt.Errorf("%w: %w", ErrGone, err)
	}
	return nil
}

// Kill ends the worker at once (a force cancel, a timeout, a worker
// reaped). Handler.Exited follows once it has exited.
func (w *Worker) Kill() { _ = w.proc.Kill() }

// Stop ends the worker gracefully: closing its socket makes it exit; if it
// has not within a second (a guest in a loop), it is killed. It returns
// once the worker has exited.
func (w *Worker) Stop() {
	_ = w.conn.Close()
	t := w.clock.AfterFunc(stopGrace, w.Kill)
	defer t.Stop()
	_ = w.proc.Wait()
}
