package peermux

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/rayhost/rayhost/host/internal/peerwire"
	"github.com/rayhost/rayhost/internal/ipc"
)

// pipe is one direction of an in-memory stream: batches, in order.
type pipe struct {
	ch     chan []byte
	closed chan struct{}
	once   sync.Once
}

func newPipe() *pipe { return &pipe{ch: make(chan []byte, 1024), closed: make(chan struct{})} }

func (p *pipe) close() { p.once.Do(func() { close(p.closed) }) }

// end is one side's Stream: it sends on out and receives from in. gate, if
// set, is waited on by the first Send.
type end struct {
	out, in *pipe
	gate    chan struct{}
	sent    chan []peerwire.Sub // every batch sent, decoded
	once    sync.Once
}

var errBroken = errors.New("test: stream broken")

func (e *end) Send(b []byte) error {
	if e.gate != nil {
		e.once.Do(func() { <-e.gate })
	}
	c := append([]byte(nil), b...)
	if e.sent != nil {
		subs, err := peerwire.DecodeBatch(c)
		if err != nil {
			return err
		}
		e.sent <- subs
	}
	select {
	case e.out.ch <- c:
		return nil
	case <-e.out.closed:
		return errBroken
	}
}

func (e *end) Receive() ([]byte, error) {
	select {
	case b := <-e.in.ch:
		return b, nil
	case <-e.in.closed:
		return nil, errBroken
	}
}

// pair connects an owner's mux and an executor's, whose links accept runs.
func pair(t testing.TB, owner *end, accept func(*Link, ipc.Type, []byte)) (o, x *Mux, ab, ba *pipe) {
	t.Helper()
	ab, ba = newPipe(), newPipe()
	if owner == nil {
		owner = &end{}
	}
	owner.out, owner.in = ab, ba
	o = New(owner, Config{})
	x = New(&end{out: ba, in: ab}, Config{Accept: accept})
	var wg sync.WaitGroup
	wg.Go(func() { _ = o.Run() })
	wg.Go(func() { _ = x.Run() })
	t.Cleanup(func() {
		ab.close()
		ba.close()
		wg.Wait()
	})
	return o, x, ab, ba
}

// echo answers each link's exec with an outcome carrying its payload, then
// ends the link.
func echo(l *Link, typ ipc.Type, payload []byte) {
	_ = l.Send(ipc.TypePeerOutcome, payload)
	l.Close(nil, "")
}

// TestManyLinksOneBatch: frames queued while the writer is busy go in one
// batch, and every link gets its own answers, in order.
func TestManyLinksOneBatch(t *testing.T) {
	gate := make(chan struct{})
	owner := &end{gate: gate, sent: make(chan []peerwire.Sub, 16)}
	o, _, _, _ := pair(t, owner, echo)
	const n = 1000
	links := make([]*Link, n)
	for i := range links {
		l, err := o.Open(ipc.TypePeerExec, []byte(strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		links[i] = l
	}
	close(gate) // the writer was held in its first Send: the rest wait in the queue
	for i, l := range links {
		typ, payload, err := l.Receive()
		if err != nil || typ != ipc.TypePeerOutcome || string(payload) != strconv.Itoa(i) {
			t.Fatalf("link %d: %v %q %v, want its outcome", i, typ, payload, err)
		}
		if _, _, err := l.Receive(); err != io.EOF {
			t.Fatalf("link %d after its outcome: %v, want io.EOF", i, err)
		}
	}
	// The writer took what was queued when it woke (at least the first
	// frame) and was held; the rest queued behind it and went in one more.
	var batches [][]peerwire.Sub
	var all []peerwire.Sub
	for len(all) < n {
		b := <-owner.sent
		batches = append(batches, b)
		all = append(all, b...)
	}
	if len(batches) > 2 || len(batches[len(batches)-1]) < n/2 && len(batches[0]) < n/2 {
		t.Fatalf("%d batches (the first of %d frames), want the %d frames in at most two", len(batches), len(batches[0]), n)
	}
	for i, s := range all {
		if s.Link != uint64(i+1) || s.Type != ipc.TypePeerExec {
			t.Fatalf("frame %d: link %d type %v, want link %d exec (links numbered in order)", i, s.Link, s.Type, i+1)
		}
	}
	if o.Links() != 0 {
		t.Fatalf("%d links open after all ended", o.Links())
	}
}

// TestLinkEndsWithReason: a link the executor ends with a reason (a task
// it could not run) fails alone; the others carry on.
func TestLinkEndsWithReason(t *testing.T) {
	o, _, _, _ := pair(t, nil, func(l *Link, typ ipc.Type, payload []byte) {
		if string(payload) == "bad" {
			l.Close(nil, "exec: malformed")
			return
		}
		echo(l, typ, payload)
	})
	var links []*Link
	for _, p := range []string{"a", "bad", "c"} {
		l, err := o.Open(ipc.TypePeerExec, []byte(p))
		if err != nil {
			t.Fatal(err)
		}
		links = append(links, l)
	}
	if _, _, err := links[1].Receive(); !errors.Is(err, ErrPeerEnded) || err.Error() != "peermux: the other host ended the link: exec: malformed" {
		t.Fatalf("the refused link: %v, want ErrPeerEnded with the reason", err)
	}
	for _, i := range []int{0, 2} {
		if typ, _, err := links[i].Receive(); err != nil || typ != ipc.TypePeerOutcome {
			t.Fatalf("link %d: %v %v, want its outcome", i, typ, err)
		}
	}
}

// TestStreamDiesMidBatch: when the stream breaks, every open link ends
// with its error (the owner retries their attempts), frames already
// received are still read first, and no new link opens on it.
func TestStreamDiesMidBatch(t *testing.T) {
	started := make(chan *Link, 10)
	o, x, ab, ba := pair(t, nil, func(l *Link, typ ipc.Type, payload []byte) {
		if string(payload) == "quick" {
			echo(l, typ, payload)
			return
		}
		_ = l.Send(ipc.TypeCall, []byte("a call before dying"))
		started <- l
	})
	quick, _ := o.Open(ipc.TypePeerExec, []byte("quick"))
	if _, _, err := quick.Receive(); err != nil {
		t.Fatal(err)
	}
	var slow []*Link
	for range 3 {
		l, err := o.Open(ipc.TypePeerExec, []byte("slow"))
		if err != nil {
			t.Fatal(err)
		}
		slow = append(slow, l)
		<-started
	}
	for _, l := range slow {
		if typ, _, err := l.Receive(); err != nil || typ != ipc.TypeCall {
			t.Fatalf("%v %v, want the call sent before the stream broke", typ, err)
		}
	}
	ab.close() // the executor's host dies
	ba.close()
	for i, l := range slow {
		if _, _, err := l.Receive(); !errors.Is(err, errBroken) {
			t.Fatalf("link %d after the stream broke: %v, want its error", i, err)
		}
	}
	<-o.Stopped()
	<-x.Stopped()
	if _, err := o.Open(ipc.TypePeerExec, nil); !errors.Is(err, errBroken) {
		t.Fatalf("Open on a dead mux: %v, want the stream's error", err)
	}
	if err := slow[0].Send(ipc.TypeReply, nil); !errors.Is(err, errBroken) {
		t.Fatalf("Send on a dead mux: %v", err)
	}
}

// TestLateFramesDropped: frames for a link that ended (a reply crossing
// the end) are dropped; the owner closing a link ends it on the executor.
func TestLateFramesDropped(t *testing.T) {
	ended := make(chan error, 1)
	o, _, _, _ := pair(t, nil, func(l *Link, typ ipc.Type, payload []byte) {
		_ = l.Send(ipc.TypeCall, nil)
		for {
			if _, _, err := l.Receive(); err != nil {
				ended <- err
				return
			}
		}
	})
	l, _ := o.Open(ipc.TypePeerExec, nil)
	if typ, _, err := l.Receive(); err != nil || typ != ipc.TypeCall {
		t.Fatal(typ, err)
	}
	l.Close(nil, "")
	if err := <-ended; err != io.EOF {
		t.Fatalf("the executor's link after the owner closed it: %v, want io.EOF", err)
	}
	if err := l.Send(ipc.TypeReply, nil); !errors.Is(err, ErrLinkEnded) {
		t.Fatalf("Send on a closed link: %v, want ErrLinkEnded", err)
	}
	// The mux still works.
	l2, _ := o.Open(ipc.TypePeerExec, nil)
	if typ, _, err := l2.Receive(); err != nil || typ != ipc.TypeCall {
		t.Fatal(typ, err)
	}
}

// TestProtocolErrors: what a hostile or broken peer may send ends the
// stream with ErrProtocol (and a clear message), never a panic.
func TestProtocolErrors(t *testing.T) {
	sub := func(link uint64, typ ipc.Type, p string) []byte {
		return peerwire.AppendSub(nil, peerwire.Sub{Link: link, Type: typ, Payload: []byte(p)})
	}
	for _, tc := range []struct {
		name    string
		accept  bool
		batches [][]byte
		want    string
	}{
		{"empty batch", true, [][]byte{nil}, "peermux: protocol error: " + abiMalformed + ": batch: empty"},
		{"truncated frame", true, [][]byte{sub(1, ipc.TypePeerExec, "spec")[:4]}, "batch: frame 1"},
		{"link zero", true, [][]byte{sub(0, ipc.TypePeerExec, "")}, "link 0"},
		{"first frame not an exec", true, [][]byte{sub(1, ipc.TypeReply, "")}, "link 1 starts with a reply frame, not an exec"},
		{"a link the owner never opened", false, [][]byte{sub(7, ipc.TypePeerOutcome, "")}, "a frame for link 7, which this host never opened"},
		{"too many links", true, [][]byte{append(sub(1, ipc.TypePeerExec, ""), append(sub(2, ipc.TypePeerExec, ""), sub(3, ipc.TypePeerExec, "")...)...)}, "more than 2 links open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := newPipe()
			cfg := Config{MaxLinks: 2}
			if tc.accept {
				cfg.Accept = func(l *Link, typ ipc.Type, payload []byte) {}
			}
			m := New(&end{out: newPipe(), in: in}, cfg)
			for _, b := range tc.batches {
				in.ch <- b
			}
			err := m.Run()
			if !errors.Is(err, ErrProtocol) || !contains(err.Error(), tc.want) {
				t.Fatalf("Run: %v, want ErrProtocol with %q", err, tc.want)
			}
		})
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

var abiMalformed = peerwire.ErrMalformed.Error()

// TestLargeFramesSplitBatches: a batch holds at most MaxBatchBytes (a
// larger frame goes alone), and Send waits while the queue is full.
func TestLargeFramesSplitBatches(t *testing.T) {
	gate := make(chan struct{})
	owner := &end{gate: gate, sent: make(chan []peerwire.Sub, 64)}
	ab, ba := newPipe(), newPipe()
	owner.out, owner.in = ab, ba
	o := New(owner, Config{MaxBatchBytes: 1000, MaxQueuedBytes: 100_000})
	x := New(&end{out: ba, in: ab}, Config{Accept: echo})
	var wg sync.WaitGroup
	wg.Go(func() { _ = o.Run() })
	wg.Go(func() { _ = x.Run() })
	defer func() { ab.close(); ba.close(); wg.Wait() }()
	sizes := []int{10, 400, 400, 400, 3000, 10}
	var links []*Link
	for _, n := range sizes {
		l, err := o.Open(ipc.TypePeerExec, make([]byte, n))
		if err != nil {
			t.Fatal(err)
		}
		links = append(links, l)
	}
	close(gate)
	for i, l := range links {
		if _, p, err := l.Receive(); err != nil || len(p) != sizes[i] {
			t.Fatalf("link %d: %d bytes, %v", i, len(p), err)
		}
	}
	total := 0
	for total < len(sizes) {
		b := <-owner.sent
		size := 0
		for _, s := range b {
			size += len(s.Payload)
		}
		if len(b) > 1 && size > 1000 {
			t.Fatalf("a batch of %d frames and %d bytes, over the 1000 allowed", len(b), size)
		}
		total += len(b)
	}
}

// TestConcurrentLinks hammers one mux pair from many goroutines (run with
// -race): every link gets its answer.
func TestConcurrentLinks(t *testing.T) {
	o, _, _, _ := pair(t, nil, func(l *Link, typ ipc.Type, payload []byte) {
		for i := range 3 {
			_ = l.Send(ipc.TypeCall, fmt.Appendf(nil, "%s/%d", payload, i))
		}
		echo(l, typ, payload)
	})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				p := fmt.Sprintf("%d.%d", g, i)
				l, err := o.Open(ipc.TypePeerExec, []byte(p))
				if err != nil {
					t.Error(err)
					return
				}
				for j := range 3 {
					if _, got, err := l.Receive(); err != nil || string(got) != fmt.Sprintf("%s/%d", p, j) {
						t.Errorf("link %s frame %d: %q %v", p, j, got, err)
						return
					}
				}
				if _, got, err := l.Receive(); err != nil || string(got) != p {
					t.Errorf("link %s outcome: %q %v", p, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// FuzzDeliverBatch feeds arbitrary batch frames to an executor's mux: it
// must never panic, and whatever it refuses is ErrProtocol.
func FuzzDeliverBatch(f *testing.F) {
	f.Add(peerwire.AppendSub(nil, peerwire.Sub{Link: 1, Type: ipc.TypePeerExec, Payload: []byte("x")}))
	f.Add(append(peerwire.AppendSub(nil, peerwire.Sub{Link: 1, Type: ipc.TypePeerExec}), peerwire.AppendSub(nil, peerwire.Sub{Link: 1, Type: ipc.TypePeerEnd})...))
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m := New(&end{out: newPipe(), in: newPipe()}, Config{Accept: func(l *Link, typ ipc.Type, payload []byte) { l.Close(nil, "") }, MaxLinks: 16})
		defer m.Close(errBroken)
		if err := m.deliverBatch(b); err != nil && !errors.Is(err, ErrProtocol) {
			t.Fatalf("deliverBatch: %v, want nil or ErrProtocol", err)
		}
	})
}
