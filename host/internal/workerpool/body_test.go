package workerpool

import (
	"bytes"
	"errors"
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ipc"
)

// rep decodes a recorded reply frame.
func rep(t *testing.T, f frame) ipc.Reply {
	t.Helper()
	var r ipc.Reply
	if err := r.Decode([]byte(f.payload)); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestReplyBodies: a large reply to a worker that speaks bodies goes as a
// ReplyHead; its body is sent each time the worker asks for it (want_body,
// read by the pool itself) until the worker lets it go; at most
// MaxHeldBodies are held, and beyond them, or to a worker that does not
// speak bodies, a reply goes whole. A want_body for a body not held (never
// sent, or let go already) kills the worker. (The fake worker echoes what
// the host sends, so a frame the host writes comes back to the handler,
// and a want_body the host writes comes back as the worker's.)
func TestReplyBodies(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), ipc.BodyBytes/16)
	want := func(seq uint64, send bool) []byte { return (&ipc.WantBody{Seq: seq, Send: send}).Encode(nil) }

	t.Run("a worker that does not speak bodies", func(t *testing.T) {
		r, l := newRecorder(), &fakeLauncher{}
		newPool(t, Config{Max: 1}, r, l).Start()
		w := recv(t, r.ready)
		w.ReplyTail(1, 0, []byte("head"), big)
		f := recv(t, r.frames)
		if f.typ != ipc.TypeReply || string(rep(t, f).Payload) != "head"+string(big) {
			t.Fatalf("frame %v of %d bytes, want the reply whole", f.typ, len(f.payload))
		}
	})

	t.Run("held, asked for, dropped, bounded", func(t *testing.T) {
		r, l := newRecorder(), &fakeLauncher{caps: " " + ipc.ReadyPipeline + " " + ipc.ReadyBody}
		newPool(t, Config{Max: 1}, r, l).Start()
		w := recv(t, r.ready)
		w.ReplyTail(7, 3, []byte("head"), big)
		f := recv(t, r.frames)
		var h ipc.ReplyHead
		if f.typ != ipc.TypeReplyHead || h.Decode([]byte(f.payload)) != nil || h.Seq != 7 || h.Code != 3 || h.BodyLen != uint64(len(big)) || string(h.Head) != "head" {
			t.Fatalf("frame %v %+v, want the reply's head", f.typ, h)
		}
		if err := w.Send(ipc.TypeWantBody, want(7, true)); err != nil { // echoed: the worker asks
			t.Fatal(err)
		}
		for range 2 { // asked again (a guest's second recv): sent again
			f = recv(t, r.frames)
			if f.typ != ipc.TypeBody || f.payload != "\x07"+string(big) {
				t.Fatalf("frame %v of %d bytes, want the body of call 7", f.typ, len(f.payload))
			}
			_ = w.Send(ipc.TypeWantBody, want(7, true))
		}
		recv(t, r.frames) // the third
		// Let go: nothing is sent, and nothing is held.
		_ = w.Send(ipc.TypeWantBody, want(7, false))
		_ = w.Send(ipc.TypeLog, []byte("after"))
		if f := recv(t, r.frames); f.typ != ipc.TypeLog {
			t.Fatalf("frame %v after a dropped body, want the log", f.typ)
		}
		if n, bytes := w.heldBodies(); n != 0 || bytes != 0 {
			t.Fatalf("held after it was let go: %d bodies, %d bytes", n, bytes)
		}
		// At most MaxHeldBodies held; the next goes whole.
		for i := range MaxHeldBodies {
			w.ReplyTail(uint64(100+i), 0, nil, big)
			if f := recv(t, r.frames); f.typ != ipc.TypeReplyHead {
				t.Fatalf("reply %d: %v, want a head", i, f.typ)
			}
		}
		w.ReplyTail(200, 0, nil, big)
		if f := recv(t, r.frames); f.typ != ipc.TypeReply {
			t.Fatalf("the reply past MaxHeldBodies: %v, want it whole", f.typ)
		}
		// A small reply is always whole.
		w.ReplyTail(201, 0, []byte("x"), []byte("y"))
		if f := recv(t, r.frames); f.typ != ipc.TypeReply {
			t.Fatalf("a small reply: %v", f.typ)
		}
		if n, bytes := w.heldBodies(); n != MaxHeldBodies || bytes != int64(MaxHeldBodies*len(big)) {
			t.Fatalf("held: %d bodies, %d bytes", n, bytes)
		}
		// A reply too large for a frame, held or not, fails its call.
		huge := make([]byte, ipc.MaxFrame)
		w.ReplyTail(400, 0, []byte("x"), huge)
		f = recv(t, r.frames)
		if f.typ != ipc.TypeReply || rep(t, f).Code != int64(abi.ErrCodeTooLarge) {
			t.Fatalf("a reply past MaxFrame: %v %q, want too_large", f.typ, f.payload)
		}
		// Asking for a body let go kills the worker, and what it held is
		// dropped.
		_ = w.Send(ipc.TypeWantBody, want(100, false))
		_ = w.Send(ipc.TypeWantBody, want(100, true))
		if e := recv(t, r.exited); e.w != w || !errors.Is(e.err, errKilled) {
			t.Fatalf("exited %+v, want the worker killed", e)
		}
		if n, bytes := w.heldBodies(); n != 0 || bytes != 0 {
			t.Fatalf("held after the worker exited: %d bodies, %d bytes", n, bytes)
		}
		w.ReplyTail(300, 0, nil, big) // to a worker gone: not held
		if n, _ := w.heldBodies(); n != 0 {
			t.Fatal("a body held for a worker that exited")
		}
	})

	t.Run("asked for and never read", func(t *testing.T) {
		// A worker that asks for a body again and again without reading
		// it: the host's queue of bodies to write is bounded, and past it
		// the worker is killed (no goroutine or memory per request).
		r, l := newRecorder(), &fakeLauncher{caps: " " + ipc.ReadyBody, mute: true}
		newPool(t, Config{Max: 1}, r, l).Start()
		w := recv(t, r.ready)
		w.holdBody(5, big) // as if its head was sent
		for range 10 * MaxHeldBodies {
			if w.wantBody(want(5, true)) != nil {
				break
			}
		}
		if err := w.wantBody(want(5, true)); !errors.Is(err, ErrProtocol) {
			t.Fatalf("the request past the queue: %v, want ErrProtocol", err)
		}
	})

	t.Run("a body never sent", func(t *testing.T) {
		r, l := newRecorder(), &fakeLauncher{caps: " " + ipc.ReadyBody}
		newPool(t, Config{Max: 1}, r, l).Start()
		w := recv(t, r.ready)
		_ = w.Send(ipc.TypeWantBody, want(42, false))
		if e := recv(t, r.exited); e.w != w || !errors.Is(e.err, errKilled) {
			t.Fatalf("exited %+v, want the worker killed", e)
		}
	})
}
