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
// behind a body the guest has not taken. The host holds the body until the
// worker lets it go (the mailbox is emptied: the next call, or the
// invocation's end), so a recv may ask for it again (ABI.md §4).

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

// whole returns the whole payload in one buffer, reading the body and
// letting the host drop it; ok false if it could not be had (the host is
// gone).
func (r *reply) whole() ([]byte, bool) {
	if r.body == nil {
		return r.Payload, true
	}
	buf := make([]byte, r.size())
	ok := r.body.into(r.Payload, buf)
	r.body.release()
	return buf, ok
}

// body is a large reply's body, held by the host until released.
type body struct {
	w   *Worker
	seq uint64
	n   int

	// mu serialises the reads of the body and its release (a guest's
	// recv and the emptying of its mailbox come from one goroutine; a
	// concurrent actor's reply and its release from another).
	mu       sync.Mutex
	released bool
}

// bodyRead is one read of a body the worker asked for: the read loop puts
// it in dst and closes done.
type bodyRead struct {
	dst  []byte
	done chan struct{}
	ok   bool
}

func (w *Worker) newBody(seq uint64, n int) *body {
	return &body{w: w, seq: seq, n: n}
}

// into copies the payload (head, then the body) into p, which must be its
// exact length: the body is asked for and read from the socket into p. It
// reports false if p is not that length, the body was released, or it did
// not come (the host is gone).
func (b *body) into(head, p []byte) bool {
	if len(p) != len(head)+b.n {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.released {
		return false
	}
	copy(p, head)
	w := b.w
	rd := &bodyRead{dst: p[len(head):], done: make(chan struct{})}
	w.seqMu.Lock()
	w.bodies[b.seq] = rd
	w.seqMu.Unlock()
	forget := func() {
		w.seqMu.Lock()
		if w.bodies[b.seq] == rd {
			delete(w.bodies, b.seq)
		}
		w.seqMu.Unlock()
	}
	if err := w.conn.Write(ipc.TypeWantBody, (&ipc.WantBody{Seq: b.seq, Send: true}).Encode(nil)); err != nil {
		forget()
		return false
	}
	select {
	case <-rd.done:
		return rd.ok
	case <-w.closed:
		forget()
		return false
	}
}

// release lets the host drop the body: its mailbox was emptied, or its
// call ended.
func (b *body) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.released {
		return
	}
	b.released = true
	// Buffered: it goes with the worker's next frame (or soon after).
	_ = b.w.conn.Buffer(ipc.TypeWantBody, (&ipc.WantBody{Seq: b.seq}).Encode(nil))
}

// readBody reads a TypeBody frame of n bytes (its header read) into the
// read that asked for it; a body nobody asked for (or of another length)
// is skipped, and that read fails.
func (w *Worker) readBody(n int) error {
	seq, rest, err := w.conn.ReadBodySeq(n)
	if err != nil {
		return err
	}
	w.seqMu.Lock()
	rd := w.bodies[seq]
	delete(w.bodies, seq)
	w.seqMu.Unlock()
	if rd == nil || len(rd.dst) != rest {
		if rd != nil {
			close(rd.done)
		}
		return w.conn.Discard(rest)
	}
	err = w.conn.ReadFull(rd.dst)
	rd.ok = err == nil
	close(rd.done)
	return err
}

// deliverReply hands r to the call waiting for it, and reports whether one
// was. The channel is taken and sent on under seqMu: a call that gives up
// (awaitReplyFor) then either finds the reply in its channel or knows none
// will come.
func (w *Worker) deliverReply(seq uint64, r reply) bool {
	w.seqMu.Lock()
	defer w.seqMu.Unlock()
	ch := w.pending[seq]
	delete(w.pending, seq)
	if ch == nil {
		return false
	}
	ch <- r // buffered: one reply per call
	return true
}
