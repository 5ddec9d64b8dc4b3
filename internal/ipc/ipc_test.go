//go:build unix

package ipc

import (
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
