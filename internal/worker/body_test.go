//go:build unix

package worker

import (
	"bytes"
	"context"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/ipc"
)

// fakeHost answers a worker's calls as a host that holds large replies'
// bodies does: each call gets the next of replies (a ReplyHead when its
// tail is large), and a WantBody gets the body or drops it. Every frame
// it reads is reported on frames.
type fakeHost struct {
	conn    *ipc.Conn
	replies chan [2][]byte // head, tail
	frames  chan ipc.Type
	drops   chan uint64
	// extraBody, if set, is sent as a body nobody asked for before each
	// body asked for.
	extraBody bool
	// whole, if set, sends every reply in one frame, as a host that does
	// not hold bodies.
	whole bool
	// shortBody, if set, sends each body one byte short.
	shortBody bool

	mu   sync.Mutex
	held map[uint64][]byte
}

// hold makes the fake host hold body for seq, as if it had sent its head.
func (h *fakeHost) hold(seq uint64, body []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held[seq] = body
}

func (h *fakeHost) run(t testing.TB) {
	for {
		typ, p, err := h.conn.Read(nil)
		if err != nil {
			return
		}
		switch typ {
		case ipc.TypeCall:
			var c ipc.Call
			if c.Decode(p) != nil || c.Seq == 0 {
				continue
			}
			r := <-h.replies
			if len(r[1]) >= ipc.BodyBytes && !h.whole {
				h.hold(c.Seq, r[1])
				_ = h.conn.Write(ipc.TypeReplyHead, (&ipc.ReplyHead{Seq: c.Seq, BodyLen: uint64(len(r[1])), Head: r[0]}).Encode(nil))
			} else {
				_ = h.conn.WriteReply(&ipc.Reply{Seq: c.Seq, Payload: r[0]}, r[1])
			}
		case ipc.TypeWantBody:
			var m ipc.WantBody
			err := m.Decode(p)
			h.mu.Lock()
			body := h.held[m.Seq]
			if !m.Send {
				delete(h.held, m.Seq)
			}
			h.mu.Unlock()
			if err != nil || body == nil {
				t.Errorf("want_body %+v of a body not held", m)
				continue
			}
			if !m.Send {
				h.drops <- m.Seq
				continue
			}
			if h.extraBody {
				_ = h.conn.WriteBody(m.Seq+1000, make([]byte, 3<<20))
			}
			if h.shortBody {
				body = body[:len(body)-1]
			}
			_ = h.conn.WriteBody(m.Seq, body) // kept until dropped
		}
		select {
		case h.frames <- typ:
		default:
		}
	}
}

// bodyHarness is a worker reading a real Unix socket with its read loop,
// an instance with guestPages of guest memory, and a fake host.
func bodyHarness(t testing.TB) (*Worker, *instance, *fakeHost) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *ipc.Conn {
		f := os.NewFile(uintptr(fd), "sock")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		return ipc.NewConn(c)
	}
	wc, hc := conn(fds[0]), conn(fds[1])
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	mod, err := rt.Instantiate(ctx, memoryModulePages())
	if err != nil {
		t.Fatal(err)
	}
	w := &Worker{conn: wc, pending: map[uint64]chan reply{}, bodies: map[uint64]*bodyRead{}, closed: make(chan struct{}), running: map[ids.TaskID]*execution{}, early: map[ids.TaskID]bool{}}
	e := &execution{task: ids.NewTaskID(), cancelled: make(chan struct{})}
	inst := &instance{exec: e, mod: mod}
	host := &fakeHost{conn: hc, replies: make(chan [2][]byte, 4), frames: make(chan ipc.Type, 64), drops: make(chan uint64, 4), held: map[uint64][]byte{}}
	loop := make(chan error, 1)
	go func() { loop <- w.readLoop(ctx) }()
	go host.run(t)
	t.Cleanup(func() {
		w.shut()
		wc.Close()
		hc.Close()
		<-loop
		rt.Close(ctx)
	})
	return w, inst, host
}

// guestPages is the harness's guest memory: 68.75 MiB.
const guestPages = 1100

// memoryModulePages is a module with one exported memory of guestPages.
func memoryModulePages() []byte {
	m := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	m = append(m, 5, 4, 1, 0, guestPages&0x7f|0x80, guestPages>>7) // memory section: min guestPages (LEB128)
	m = append(m, 7, 10, 1, 6, 'm', 'e', 'm', 'o', 'r', 'y', 2, 0)
	return m
}

// guestGet makes a guest's get through serve, the fake host answering it
// with head+tail; it returns what call returned.
func guestGet(w *Worker, inst *instance, host *fakeHost, head, tail []byte) int64 {
	host.replies <- [2][]byte{head, tail}
	req := (&abi.GetRequest{TimeoutNs: -1, Refs: []abi.Ref{{ID: inst.exec.task.Put(1)}}}).Encode(nil)
	return w.serve(inst, abi.OpGet, req)
}

// recv is the guest's recv(ptr, n).
func recv(inst *instance, ptr, n uint32) uint32 {
	stack := []uint64{api.EncodeU32(ptr), api.EncodeU32(n)}
	hostRecv(withInstance(context.Background(), inst), inst.mod, stack)
	return uint32(stack[0])
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

// TestLargeReply: a reply of ipc.BodyBytes or more comes without its body,
// which the guest's recv asks for and gets read from the socket into guest
// memory, again at a second recv, and which the host is told to drop at
// the next call; a recv asking for less gets the whole reply as an
// ordinary mailbox, copied as often as asked; one nobody recv's is dropped
// at the next call; frames behind a reply the guest sits on arrive (a
// cancel); a bad pointer copies nothing and leaves the reply to be recv'd;
// a body nobody asked for is skipped; a reply whose call is gone, and a
// concurrent actor's reply once read whole, are let go; a body of the
// wrong length fails the recv and nothing after it.
func TestLargeReply(t *testing.T) {
	const at = 64 << 10
	head := []byte("head")
	tail := pattern(2<<20, 1)
	whole := append(append([]byte(nil), head...), tail...)
	mem := func(inst *instance, n int) []byte {
		b, ok := inst.mod.Memory().Read(at, uint32(n))
		if !ok {
			t.Fatal("reading guest memory")
		}
		return b
	}
	hang := func() <-chan time.Time { return time.After(time.Minute) } // a hang guard only

	t.Run("recv'd whole, straight into guest memory", func(t *testing.T) {
		w, inst, host := bodyHarness(t)
		if n := guestGet(w, inst, host, head, tail); n != int64(len(whole)) {
			t.Fatalf("call returned %d, want %d", n, len(whole))
		}
		if inst.body == nil {
			t.Fatal("the reply came whole, not as a head")
		}
		if n := recv(inst, at, uint32(len(whole))+100); n != uint32(len(whole)) || !bytes.Equal(mem(inst, len(whole)), whole) {
			t.Fatalf("recv: %d bytes, equal %v", n, bytes.Equal(mem(inst, len(whole)), whole))
		}
		// recv copies as often as asked until the next call (ABI.md §4):
		// the body is read from the host again.
		clear(mem(inst, len(whole)))
		if n := recv(inst, at, uint32(len(whole))); n != uint32(len(whole)) || !bytes.Equal(mem(inst, len(whole)), whole) {
			t.Fatalf("a second recv: %d", n)
		}
		if n := guestGet(w, inst, host, []byte("small"), nil); n != 5 || recv(inst, at, 5) != 5 || string(mem(inst, 5)) != "small" {
			t.Fatalf("the call after: %d %q", n, mem(inst, 5))
		}
		select {
		case <-host.drops: // the next call let the body go
		case <-hang():
			t.Fatal("the host was never told to drop the body")
		}
	})

	t.Run("recv'd short, then again", func(t *testing.T) {
		w, inst, host := bodyHarness(t)
		guestGet(w, inst, host, head, tail)
		if n := recv(inst, at, 1000); n != 1000 || !bytes.Equal(mem(inst, 1000), whole[:1000]) {
			t.Fatalf("short recv: %d", n)
		}
		select {
		case <-host.drops: // it is the worker's now
		case <-hang():
			t.Fatal("the host was never told to drop the body")
		}
		for range 2 {
			if n := recv(inst, at, uint32(len(whole))); n != uint32(len(whole)) || !bytes.Equal(mem(inst, len(whole)), whole) {
				t.Fatalf("a recv after a short one: %d (a mailbox in the worker's memory is copied as often as asked)", n)
			}
		}
	})

	t.Run("never recv'd: dropped at the next call", func(t *testing.T) {
		w, inst, host := bodyHarness(t)
		guestGet(w, inst, host, head, tail)
		tail2 := pattern(3<<20, 2)
		if n := guestGet(w, inst, host, nil, tail2); n != int64(len(tail2)) {
			t.Fatalf("the next call: %d", n)
		}
		select {
		case <-host.drops:
		case <-hang():
			t.Fatal("the host was never told to drop the first body")
		}
		if n := recv(inst, at, uint32(len(tail2))); n != uint32(len(tail2)) || !bytes.Equal(mem(inst, len(tail2)), tail2) {
			t.Fatalf("the next call's reply: %d bytes", n)
		}
		inst.setMailbox(nil) // the invocation ends
		select {
		case <-host.drops:
		case <-hang():
			t.Fatal("the host was never told to drop the second body")
		}
	})

	t.Run("a reply whose call is gone", func(t *testing.T) {
		_, _, host := bodyHarness(t)
		// A head for a call nobody waits for (it ended): the worker lets
		// the host drop its body.
		host.hold(77, make([]byte, 2<<20))
		if err := host.conn.Write(ipc.TypeReplyHead, (&ipc.ReplyHead{Seq: 77, BodyLen: 2 << 20}).Encode(nil)); err != nil {
			t.Fatal(err)
		}
		select {
		case seq := <-host.drops:
			if seq != 77 {
				t.Fatalf("dropped %d, want 77", seq)
			}
		case <-hang():
			t.Fatal("the body of a reply nobody waited for was never let go")
		}
	})

	t.Run("a concurrent actor's call", func(t *testing.T) {
		w, inst, host := bodyHarness(t)
		// What a concurrent actor's started op does with its reply: the
		// whole of it, read into the worker's memory, and let go.
		host.replies <- [2][]byte{head, tail}
		inst.exec.ended = make(chan struct{})
		ch, seq, code := w.sendRoundTrip(inst.exec, abi.OpGet, (&abi.GetRequest{TimeoutNs: -1, Refs: []abi.Ref{{ID: inst.exec.task.Put(1)}}}).Encode(nil))
		if code < 0 {
			t.Fatal(code)
		}
		r := w.awaitReplyFor(inst.exec, ch, seq)
		got, ok := r.whole()
		if !ok || !bytes.Equal(got, whole) {
			t.Fatalf("whole: %v, %d bytes", ok, len(got))
		}
		select {
		case <-host.drops:
		case <-hang():
			t.Fatal("the host was never told to drop the body")
		}
	})

	t.Run("a body of the wrong length", func(t *testing.T) {
		w, inst, host := bodyHarness(t)
		host.shortBody = true
		guestGet(w, inst, host, head, tail)
		if n := recv(inst, at, uint32(len(whole))); n != 0 {
			t.Fatalf("recv of a body that came short: %d, want 0", n)
		}
		// The frames after it are read as before.
		host.replies <- [2][]byte{[]byte("small"), nil}
		if n := w.serve(inst, abi.OpGet, (&abi.GetRequest{TimeoutNs: -1, Refs: []abi.Ref{{ID: inst.exec.task.Put(1)}}}).Encode(nil)); n != 5 || recv(inst, at, 5) != 5 || string(mem(inst, 5)) != "small" {
			t.Fatalf("the call after: %d %q", n, mem(inst, 5))
		}
	})

	t.Run("frames behind a reply the guest sits on", func(t *testing.T) {
		w, inst, host := bodyHarness(t)
		w.current = inst.exec
		guestGet(w, inst, host, head, tail)
		// The guest computes; the host cancels its task.
		if err := host.conn.Write(ipc.TypeCancel, (&ipc.Cancel{Task: inst.exec.task}).Encode(nil)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-inst.exec.cancelled:
		case <-hang():
			t.Fatal("a cancel behind a large reply never arrived")
		}
		if n := recv(inst, at, uint32(len(whole))); n != uint32(len(whole)) || !bytes.Equal(mem(inst, len(whole)), whole) {
			t.Fatalf("recv after the cancel: %d", n)
		}
	})

	t.Run("a bad pointer", func(t *testing.T) {
		w, inst, host := bodyHarness(t)
		guestGet(w, inst, host, head, tail)
		size := inst.mod.Memory().Size()
		if n := recv(inst, size-100, uint32(len(whole))); n != 0 {
			t.Fatalf("recv past the end of memory: %d", n)
		}
		if n := recv(inst, at, uint32(len(whole))); n != uint32(len(whole)) || !bytes.Equal(mem(inst, len(whole)), whole) {
			t.Fatalf("recv after the bad one: %d", n)
		}
	})

	t.Run("a body nobody asked for", func(t *testing.T) {
		w, inst, host := bodyHarness(t)
		host.extraBody = true
		guestGet(w, inst, host, head, tail)
		if n := recv(inst, at, uint32(len(whole))); n != uint32(len(whole)) || !bytes.Equal(mem(inst, len(whole)), whole) {
			t.Fatalf("recv: %d", n)
		}
	})
}

// BenchmarkLargeReply is a 64 MiB get as a worker serves it, from the
// host's write to the bytes in guest memory: "head_and_body" asks for the
// body and reads it straight into guest memory (a host and worker that
// speak bodies); "whole" is the reply in one frame, read into a buffer of
// the worker's and copied (as before, and to a worker that does not). B/op
// is the worker's own memory per get.
//
//	go test -run '^$' -bench BenchmarkLargeReply -benchtime 20x ./internal/worker/
func BenchmarkLargeReply(b *testing.B) {
	for _, name := range []string{"head_and_body", "whole"} {
		b.Run(name, func(b *testing.B) {
			w, inst, host := bodyHarness(b)
			host.whole = name == "whole"
			tail := pattern(64<<20, 3)
			for i := range 64 << 20 / 4096 { // touch guest memory, as a guest's heap is
				inst.mod.Memory().WriteByte(uint32(i*4096), 1)
			}
			b.SetBytes(int64(len(tail)))
			b.ReportAllocs()
			for b.Loop() {
				n := guestGet(w, inst, host, nil, tail)
				if got := recv(inst, 0, uint32(n)); int64(got) != n {
					b.Fatalf("recv: %d of %d", got, n)
				}
			}
		})
	}
}
