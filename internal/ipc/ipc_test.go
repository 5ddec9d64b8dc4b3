//go:build unix

package ipc

import (
	"bytes"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

func socketPair(tb testing.TB) (*Conn, *Conn) {
	tb.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		tb.Fatal(err)
	}
	conn := func(fd int) *Conn {
		f := os.NewFile(uintptr(fd), "sock")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			tb.Fatal(err)
		}
		return NewConn(c)
	}
	a, b := conn(fds[0]), conn(fds[1])
	tb.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestFramesRoundTrip(t *testing.T) {
	a, b := socketPair(t)
	call := Call{Seq: 7, Task: ids.NewTaskID(), Op: abi.OpGet, Payload: []byte("request")}
	if err := a.Buffer(TypeCall, call.Encode(nil)); err != nil {
		t.Fatal(err)
	}
	if err := a.Write(TypeLog, (&Log{Task: call.Task, Stream: 1, Data: []byte("hi")}).Encode(nil)); err != nil {
		t.Fatal(err)
	}
	typ, payload, err := b.Read(nil)
	var got Call
	if err != nil || typ != TypeCall || got.Decode(payload) != nil || got.Seq != 7 || string(got.Payload) != "request" {
		t.Fatalf("first frame: %v %v %+v", typ, err, got)
	}
	typ, payload, err = b.Read(nil)
	var l Log
	if err != nil || typ != TypeLog || l.Decode(payload) != nil || string(l.Data) != "hi" {
		t.Fatalf("second frame: %v %v %+v", typ, err, l)
	}
}

// TestCallFramesInParts: a Call written with its payload in place (a put
// larger than the write buffer, buffered or flushed) reads back as the
// frame Encode makes, in order with the frames around it.
func TestCallFramesInParts(t *testing.T) {
	a, b := socketPair(t)
	big := make([]byte, 1<<20+13)
	for i := range big {
		big[i] = byte(i * 7)
	}
	calls := []Call{
		{Seq: 0, Task: ids.NewTaskID(), Op: abi.OpPut, Payload: big},
		{Seq: 9, Task: ids.NewTaskID(), Op: abi.OpGet, Payload: []byte("small")},
		{Seq: 0, Task: ids.NewTaskID(), Op: abi.OpPut, Payload: nil},
		{Seq: 0, Task: ids.NewTaskID(), Op: abi.OpPut, Payload: big[:1<<17]},
	}
	go func() {
		_ = a.BufferCall(&Call{Task: calls[0].Task, Op: calls[0].Op}, calls[0].Payload) // all of it as the tail
		_ = a.WriteCall(&calls[1], nil)
		_ = a.BufferCall(&Call{Task: calls[2].Task, Op: calls[2].Op, Payload: calls[2].Payload}, nil)
		head := Call{Task: calls[3].Task, Op: calls[3].Op, Payload: calls[3].Payload[:5]}
		_ = a.WriteCall(&head, calls[3].Payload[5:]) // a head in the payload, the rest as the tail
		_ = a.Write(TypeLog, (&Log{Stream: 1, Data: []byte("end")}).Encode(nil))
	}()
	for i, want := range calls {
		typ, payload, err := b.Read(nil)
		if err != nil || typ != TypeCall {
			t.Fatalf("frame %d: %v %v", i, typ, err)
		}
		if string(payload) != string(want.Encode(nil)) {
			t.Fatalf("frame %d differs from the encoded call (%d bytes, want %d)", i, len(payload), len(want.Encode(nil)))
		}
	}
	if typ, _, err := b.Read(nil); err != nil || typ != TypeLog {
		t.Fatalf("last frame: %v %v", typ, err)
	}
}

// TestReplyInParts: a reply written as a head and a tail (a large value
// read back, written from where it is) is the frame of the whole reply,
// whatever the split, with abi's EncodeSplit giving the parts.
func TestReplyInParts(t *testing.T) {
	a, b := socketPair(t)
	big := make([]byte, abi.TailBytes+3)
	for i := range big {
		big[i] = byte(i * 7)
	}
	replies := []abi.GetReply{
		{Values: []abi.Value{{Codec: abi.CodecRaw, Data: big}}},
		{Values: []abi.Value{{Codec: abi.CodecJSON, Data: []byte("1")}, {Codec: abi.CodecRaw, Data: big}}},
		{Values: []abi.Value{{Codec: abi.CodecRaw, Data: big}, {Codec: abi.CodecJSON, Data: []byte("2")}}}, // the large one not last: no tail
		{},
	}
	go func() {
		for i, rep := range replies {
			head, tail := rep.EncodeSplit(nil)
			_ = a.WriteReply(&Reply{Seq: uint64(i), Code: 0, Payload: head}, tail)
		}
	}()
	for i, rep := range replies {
		typ, payload, err := b.Read(nil)
		if err != nil || typ != TypeReply {
			t.Fatalf("frame %d: %v %v", i, typ, err)
		}
		want := (&Reply{Seq: uint64(i), Payload: rep.Encode(nil)}).Encode(nil)
		if string(payload) != string(want) {
			t.Fatalf("frame %d differs from the encoded reply (%d bytes, want %d)", i, len(payload), len(want))
		}
		var got abi.GetReply
		var r Reply
		if err := r.Decode(payload); err != nil || got.Decode(r.Payload) != nil || len(got.Values) != len(rep.Values) {
			t.Fatalf("frame %d does not decode back", i)
		}
	}
}

// BenchmarkCallReply is the host-function round trip as the worker sees
// it: a Call frame to the host over a Unix socket and its Reply back.
func BenchmarkCallReply(b *testing.B) {
	worker, host := socketPair(b)
	go func() {
		var buf []byte
		for {
			_, p, err := host.Read(buf)
			if err != nil {
				return
			}
			buf = p[:0]
			var c Call
			_ = c.Decode(p)
			r := Reply{Seq: c.Seq, Payload: c.Payload}
			if host.Write(TypeReply, r.Encode(nil)) != nil {
				return
			}
		}
	}()
	payload := make([]byte, 64)
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		c := Call{Seq: 1, Op: abi.OpGet, Payload: payload}
		if err := worker.Write(TypeCall, c.Encode(nil)); err != nil {
			b.Fatal(err)
		}
		_, p, err := worker.Read(buf)
		if err != nil {
			b.Fatal(err)
		}
		buf = p[:0]
	}
}

// TestPipelineFrames: unqueue and returned carry a task ID as cancel does,
// and are named in logs.
func TestPipelineFrames(t *testing.T) {
	a, b := socketPair(t)
	id := ids.NewTaskID()
	for _, typ := range []Type{TypeUnqueue, TypeReturned} {
		if err := a.Write(typ, (&Cancel{Task: id}).Encode(nil)); err != nil {
			t.Fatal(err)
		}
		got, payload, err := b.Read(nil)
		var c Cancel
		if err != nil || got != typ || c.Decode(payload) != nil || c.Task != id {
			t.Fatalf("%v: read %v %v %+v", typ, got, err, c)
		}
	}
	for typ, name := range map[Type]string{TypeUnqueue: "unqueue", TypeReturned: "returned"} {
		if typ.String() != name {
			t.Errorf("%d is %q, want %q", typ, typ.String(), name)
		}
	}
	var c Cancel
	if c.Decode(make([]byte, 17)) == nil {
		t.Error("a payload longer than a task ID decoded")
	}
}

func TestReadyHas(t *testing.T) {
	tests := []struct {
		ready string
		want  bool
	}{
		{"123 pipeline", true},
		{"123 other pipeline\n[{\"name\":\"seccomp\"}]", true},
		{"123", false},                 // a worker before the pipeline
		{"123\n[\"pipeline\"]", false}, // only the first line names capabilities
		{"pipeline", false},            // the first field is the pid
		{"123 pipelines", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := ReadyHas([]byte(tt.ready), ReadyPipeline); got != tt.want {
			t.Errorf("ReadyHas(%q) = %v, want %v", tt.ready, got, tt.want)
		}
	}
}

// TestReadInPieces: a frame's payload read in pieces (ReadHeader, then
// ReadFull and Discard, from another goroutine) leaves the next frame
// where Read finds it; a length over MaxFrame is refused before any byte
// of the payload is read.
func TestReadInPieces(t *testing.T) {
	a, b := socketPair(t)
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i * 13)
	}
	go func() {
		_ = a.WriteReply(&Reply{Seq: 7, Code: 1}, big)
		_ = a.Write(TypeCancel, []byte("next"))
		_ = a.WriteReply(&Reply{Seq: 8}, big)
		_ = a.Write(TypeLog, []byte("last"))
	}()
	typ, n, err := b.ReadHeader()
	if err != nil || typ != TypeReply || n != 2+len(big) {
		t.Fatalf("header: %v %d %v", typ, n, err)
	}
	head := make([]byte, 2)
	got := make([]byte, len(big))
	done := make(chan error, 1)
	go func() { // the rest is read by another goroutine, as a worker's guest call does
		if err := b.ReadFull(head); err != nil {
			done <- err
			return
		}
		done <- b.ReadFull(got)
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var r Reply
	if err := r.Decode(head); err != nil || r.Seq != 7 || r.Code != 1 || string(got) != string(big) {
		t.Fatalf("reply read in pieces: %+v, %v, payload equal %v", r, err, string(got) == string(big))
	}
	if typ, p, err := b.Read(nil); err != nil || typ != TypeCancel || string(p) != "next" {
		t.Fatalf("the frame after: %v %q %v", typ, p, err)
	}
	if _, n, err = b.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	if err := b.Discard(n); err != nil {
		t.Fatal(err)
	}
	if typ, p, err := b.Read(nil); err != nil || typ != TypeLog || string(p) != "last" {
		t.Fatalf("the frame after a discarded one: %v %q %v", typ, p, err)
	}

	// A length above MaxFrame: refused from the header alone.
	c, d := socketPair(t)
	go func() {
		var hdr [5]byte
		hdr[0], hdr[1], hdr[2], hdr[3], hdr[4] = 0xff, 0xff, 0xff, 0xff, byte(TypeReply)
		c.c.(interface{ Write([]byte) (int, error) }).Write(hdr[:])
	}()
	if _, _, err := d.ReadHeader(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("a 4 GiB frame: %v, want ErrFrameTooLarge", err)
	}
}

// TestBodyFrames: a body frame reads back as its sequence number and
// bytes; a reply head, a want_body and their bounds round-trip or are
// refused.
func TestBodyFrames(t *testing.T) {
	a, b := socketPair(t)
	data := make([]byte, 2<<20)
	for i := range data {
		data[i] = byte(i * 3)
	}
	go func() {
		_ = a.WriteBody(300, data)
		_ = a.Write(TypeBody, []byte{0x80, 0x80}) // a sequence number cut short
	}()
	typ, n, err := b.ReadHeader()
	if err != nil || typ != TypeBody {
		t.Fatalf("%v %v", typ, err)
	}
	seq, rest, err := b.ReadBodySeq(n)
	got := make([]byte, rest)
	if err != nil || seq != 300 || rest != len(data) || b.ReadFull(got) != nil || !bytes.Equal(got, data) {
		t.Fatalf("body: seq %d, %d bytes, %v", seq, rest, err)
	}
	if _, n, err = b.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.ReadBodySeq(n); err == nil {
		t.Fatal("a body frame without a whole sequence number was read")
	}

	h := ReplyHead{Seq: 9, Code: -3, BodyLen: 5 << 20, Head: []byte("head")}
	var h2 ReplyHead
	if err := h2.Decode(h.Encode(nil)); err != nil || h2.Seq != 9 || h2.Code != -3 || h2.BodyLen != 5<<20 || string(h2.Head) != "head" {
		t.Fatalf("reply head: %+v %v", h2, err)
	}
	h.BodyLen = MaxFrame + 1
	if err := h2.Decode(h.Encode(nil)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("a body over MaxFrame: %v", err)
	}
	for _, w := range []WantBody{{Seq: 1, Send: true}, {Seq: 1 << 40}} {
		var w2 WantBody
		if err := w2.Decode(w.Encode(nil)); err != nil || w2 != w {
			t.Fatalf("want_body %+v: %+v %v", w, w2, err)
		}
	}
	var w WantBody
	if w.Decode([]byte{1, 1, 7}) == nil {
		t.Fatal("a want_body with bytes after it decoded")
	}
}
