package worker

import (
	"sync"

	"github.com/rayhost/rayhost/internal/ipc"
)

// A large reply (ipc.BodyBytes or more) comes as a TypeReplyHead: all of
// it but its body, which the host holds. The guest's call returns the
// whole length; once the guest has allocated memory for it, its recv asks
// for the body (TypeWantBody) and the read loop reads the TypeBody that
// answers straight into that memory. A 100 MiB value then costs the
// worker one copy (the kernel's, into guest memory) and no buffer of its
// own — whose fresh pages cost more than the copy — and the read loop
// never waits for the guest: a cancel or another call's reply is not held
// behind a body the guest has not taken.

// reply is a Reply as a call receives it: Payload, then body's bytes if
// body is set (a large reply).
type reply struct {
	ipc.Reply
	body *body
}

// size is the reply's whole payload length.
func (r *reply) size() int {
	if r.body != nil {
		return len(r.Payload) + r.body.n
	}
	return len(r.Payload)
}

// whole returns the whole payload in one buffer, asking for the body if
// there is one; ok false if it could not be had (the host is gone).
func (r *reply) whole() ([]byte, bool) {
	if r.body == nil {
		return r.Payload, true
	}
	buf := make([]byte, r.size())
	return buf, r.body.into(r.Payload, buf)
}

// body is a large reply's body, held by the host until asked for.
type body struct {
	w   *Worker
	seq uint64
	n   int

	mu    sync.Mutex
	state bodyState
	dst   []byte        // where the read loop puts it, once asked
	done  chan struct{} // closed once it is in dst, or will never be
}

type bodyState uint8

const (
	bodyHeld      bodyState = iota // at the host
	bodyAsked                      // asked for; the read loop puts it in dst
	bodyDelivered                  // in dst
	bodyDropped                    // the host was told to drop it
	bodyFailed                     // it did not come whole (the host is gone, or sent another length)
)

func (w *Worker) newBody(seq uint64, n int) *body {
	return &body{w: w, seq: seq, n: n, done: make(chan struct{})}
}

// into copies the payload (head, then the body) into p, which must be its
// exact length: the body is asked for and read from the socket into p. It
// reports false if p is not that length, or the body was dropped, already
// delivered, or did not come.
func (b *body) into(head, p []byte) bool {
	if len(p) != len(head)+b.n {
		return false
	}
	b.mu.Lock()
	if b.state != bodyHeld {
		b.mu.Unlock()
		return false
	}
	b.state, b.dst = bodyAsked, p[len(head):]
	b.mu.Unlock()
	copy(p, head)
	w := b.w
	w.seqMu.Lock()
	w.bodies[b.seq] = b
	w.seqMu.Unlock()
	if err := w.conn.Write(ipc.TypeWantBody, (&ipc.WantBody{Seq: b.seq, Send: true}).Encode(nil)); err != nil {
		b.finish(bodyFailed)
		return false
	}
	select {
	case <-b.done:
	case <-w.closed:
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state == bodyDelivered
}

// release lets the host drop the body if nothing asked for it: its call
// ended, or its mailbox was emptied.
func (b *body) release() {
	b.mu.Lock()
	if b.state != bodyHeld {
		b.mu.Unlock()
		return
	}
	b.state = bodyDropped
	b.mu.Unlock()
	// Buffered: it goes with the worker's next frame (or soon after).
	_ = b.w.conn.Buffer(ipc.TypeWantBody, (&ipc.WantBody{Seq: b.seq}).Encode(nil))
}

// finish ends an asked-for body in state (delivered or failed).
func (b *body) finish(state bodyState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != bodyAsked {
		return
	}
	b.state = state
	close(b.done)
}

// readBody reads a TypeBody frame of n bytes (its header read) into the
// body that asked for it; one nobody asked for (or of another length) is
// skipped.
func (w *Worker) readBody(n int) error {
	seq, rest, err := w.conn.ReadBodySeq(n)
	if err != nil {
		return err
	}
	w.seqMu.Lock()
	b := w.bodies[seq]
	delete(w.bodies, seq)
	w.seqMu.Unlock()
	if b == nil || len(b.dst) != rest {
		if b != nil {
			b.finish(bodyFailed)
		}
		return w.conn.Discard(rest)
	}
	if err := w.conn.ReadFull(b.dst); err != nil {
		b.finish(bodyFailed)
		return err
	}
	b.finish(bodyDelivered)
	return nil
}
