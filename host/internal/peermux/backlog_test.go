package peermux

import (
	"errors"
	"strings"
	"testing"

	"github.com/rayhost/rayhost/host/internal/peerwire"
	"github.com/rayhost/rayhost/internal/ipc"
)

// TestUnreadLinkBacklog: a link whose reader does not read (a task's
// handler waiting for the disk, or a hostile peer flooding one link) does
// not make the receiving host keep every frame: past MaxInboxBytes the
// link is ended with ErrBacklog, its sender sees it ended with the reason,
// the host's unread bytes stay bounded, and the other links carry on.
// (Found by an attack review: protocol 4's one stream per pair of hosts
// lost the per-attempt flow control of protocol 3.)
func TestUnreadLinkBacklog(t *testing.T) {
	accepted := make(chan *Link, 2)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	o, x, _, _ := pair(t, nil, func(l *Link, typ ipc.Type, payload []byte) {
		if string(payload) == "echo" {
			echo(l, typ, payload)
			return
		}
		accepted <- l
		<-release // never reads
	})
	l, err := o.Open(ipc.TypePeerExec, []byte("flood"))
	if err != nil {
		t.Fatal(err)
	}
	xl := <-accepted
	const size = 1 << 20
	sent := 0
	for ; sent < 1000; sent++ {
		if err := l.Send(ipc.TypeReply, make([]byte, size)); err != nil {
			break
		}
		if got := x.inbox.Load(); got > x.cfg.MaxInboxBytes {
			t.Fatalf("the receiving host keeps %d unread bytes, past its bound %d", got, x.cfg.MaxInboxBytes)
		}
	}
	_, _, err = l.Receive()
	if !errors.Is(err, ErrPeerEnded) || !strings.Contains(err.Error(), "waited to be read") {
		t.Fatalf("the flooding link ended with %v, want ErrPeerEnded naming the backlog", err)
	}
	var xerr error
	for xerr == nil {
		_, _, xerr = xl.Receive()
	}
	if !errors.Is(xerr, ErrBacklog) {
		t.Fatalf("the unread link ended with %v here, want ErrBacklog", xerr)
	}
	if got := x.inbox.Load(); got != 0 {
		t.Fatalf("%d unread bytes still counted after the link ended", got)
	}
	// Another link on the same stream works.
	e, err := o.Open(ipc.TypePeerExec, []byte("echo"))
	if err != nil {
		t.Fatal(err)
	}
	if typ, p, err := e.Receive(); err != nil || typ != ipc.TypePeerOutcome || string(p) != "echo" {
		t.Fatalf("a link after the backlog: %v %q %v", typ, p, err)
	}
}

// TestLargeFrameToIdleLink: one frame larger than MaxInboxBytes (a Get's
// 100 MiB reply relayed to a task on another host) reaches a link whose
// reader is caught up: the bound is on a backlog, not on a frame.
func TestLargeFrameToIdleLink(t *testing.T) {
	got := make(chan int, 1)
	o, x, _, _ := pair(t, nil, func(l *Link, typ ipc.Type, payload []byte) {
		_, p, err := l.Receive()
		if err != nil {
			got <- -1
			return
		}
		got <- len(p)
		l.Close(nil, "")
	})
	size := int(x.cfg.MaxInboxBytes) + 1<<20
	l, err := o.Open(ipc.TypePeerExec, []byte("big"))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Send(ipc.TypeReply, make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	if n := <-got; n != size {
		t.Fatalf("the link read a frame of %d bytes, want %d", n, size)
	}
}

// TestWaitingFrameOwnsItsBytes: a frame that waits behind another unread
// one is a copy, not a view into the batch it came in: a link that is not
// read keeps its frames' bytes alive, not every batch that carried one
// (a peer mixing a byte for an unread link into each large batch would
// otherwise pin the batches).
func TestWaitingFrameOwnsItsBytes(t *testing.T) {
	m := New(&end{in: newPipe(), out: newPipe()}, Config{})
	l, err := m.Open(ipc.TypePeerExec, nil)
	if err != nil {
		t.Fatal(err)
	}
	var batch []byte
	for _, p := range []string{"first", "second"} {
		batch = peerwireAppend(batch, l.ID(), p)
	}
	if err := m.deliverBatch(batch); err != nil {
		t.Fatal(err)
	}
	for i := range batch {
		batch[i] = 'X' // the batch's buffer, reused or garbage
	}
	_, _, _ = l.Receive() // the first frame: read as it came
	if _, p, err := l.Receive(); err != nil || string(p) != "second" {
		t.Fatalf("the frame that waited reads %q %v: it aliased its batch", p, err)
	}
}

func peerwireAppend(b []byte, link uint64, payload string) []byte {
	return peerwire.AppendSub(b, peerwire.Sub{Link: link, Type: ipc.TypeReply, Payload: []byte(payload)})
}
