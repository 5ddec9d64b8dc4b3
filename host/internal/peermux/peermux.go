package peermux

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/rayhost/rayhost/host/internal/peerwire"
	"github.com/rayhost/rayhost/internal/ipc"
)

// Errors of a stream and its links.
var (
	// ErrProtocol: the other host sent what this protocol does not allow
	// (a frame for a link it cannot have opened, too many links, a batch
	// that does not decode). The stream ends.
	ErrProtocol = errors.New("peermux: protocol error")
	// ErrLinkEnded: this side ended the link (Close).
	ErrLinkEnded = errors.New("peermux: link ended")
	// ErrPeerEnded: the other side ended the link with a reason.
	ErrPeerEnded = errors.New("peermux: the other host ended the link")
	// ErrBacklog: frames came for the link faster than it read them, past
	// Config.MaxInboxBytes (or the mux's MaxInboxTotal): the link was
	// ended, so that the host does not keep them without bound.
	ErrBacklog = errors.New("peermux: the link's unread frames passed their bound")
)

// Stream is one end of the stream the links share: Send sends the payload
// of one ipc.TypePeerBatch frame, Receive returns the next one's. Send is
// called by one goroutine at a time, Receive by another; Send must not keep
// its argument after it returns, and the mux keeps what Receive returns
// (slices of it are handed to the links).
type Stream interface {
	Send(batch []byte) error
	Receive() ([]byte, error)
}

// Config configures a Mux. The zero value is the owner's side with the
// default sizes.
type Config struct {
	// Accept is set on the side that runs tasks: it is called, in a
	// goroutine of its own, with each link the other side opens and that
	// link's first frame, which must be an ipc.TypePeerExec. Without
	// Accept (the owner's side) only Open makes links.
	Accept func(l *Link, typ ipc.Type, payload []byte)
	// MaxBatchBytes bounds a batch frame (a larger frame goes alone);
	// default 1 MiB.
	MaxBatchBytes int
	// MaxQueuedBytes: Send and Open wait while this much waits to be sent;
	// default 64 MiB.
	MaxQueuedBytes int
	// MaxLinks bounds the links the other side may have open here (with
	// Accept); more is a protocol error. Default 100,000.
	MaxLinks int
	// MaxInboxBytes bounds the bytes of a link's frames received and not
	// read yet; MaxInboxTotal, those of all links (a frame that finds none
	// waiting is kept whatever its size: a message bounds it). One past either ends
	// its link with ErrBacklog (both sides see it end) rather than be kept:
	// one stream carries every link, so the reader cannot stop for one
	// link without holding up the others. Defaults 64 MiB and 512 MiB.
	MaxInboxBytes, MaxInboxTotal int64
}

func (c *Config) defaults() {
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 1 << 20
	}
	if c.MaxQueuedBytes <= 0 {
		c.MaxQueuedBytes = 64 << 20
	}
	if c.MaxLinks <= 0 {
		c.MaxLinks = 100_000
	}
	if c.MaxInboxBytes <= 0 {
		c.MaxInboxBytes = 64 << 20
	}
	if c.MaxInboxTotal <= 0 {
		c.MaxInboxTotal = 512 << 20
	}
}

// Mux carries links over one Stream.
type Mux struct {
	cfg  Config
	s    Stream
	kick chan struct{} // a frame was queued (capacity 1)
	dead chan struct{} // closed by fail
	// writerDone is closed when the writer has returned: after it, Stream.Send
	// is never called again.
	writerDone chan struct{}

	mu    sync.Mutex
	room  *sync.Cond // the queue shrank, or the mux died
	links map[uint64]*Link
	// last is the last link opened: by Open on the owner's side, by the
	// other side's first frames with Accept. Links are numbered in
	// increasing order, so a frame for a link at or below last that is not
	// open is a late frame of an ended link, and is dropped.
	last  uint64
	queue []byte // encoded subs waiting for the writer
	cuts  []int  // the end offset of each sub in queue
	err   error  // why the mux died; nil while it runs

	// inbox: the bytes of frames received for links and not read yet.
	inbox atomic.Int64
}

// New returns a mux over s. Run it with Run.
func New(s Stream, cfg Config) *Mux {
	cfg.defaults()
	m := &Mux{cfg: cfg, s: s, kick: make(chan struct{}, 1), dead: make(chan struct{}), writerDone: make(chan struct{}),
		links: map[uint64]*Link{}}
	m.room = sync.NewCond(&m.mu)
	go m.write()
	return m
}

// Run reads batches and hands their frames to their links until the
// stream fails or a batch breaks the protocol; then every link ends with
// that error, which Run returns once the mux will not call Stream.Send
// again.
func (m *Mux) Run() error {
	for {
		b, err := m.s.Receive()
		if err != nil {
			m.fail(err)
			break
		}
		if err := m.deliverBatch(b); err != nil {
			m.fail(err)
			break
		}
	}
	<-m.writerDone
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Close ends the mux and every link with err (the stream itself is the
// caller's to end, which makes Run return).
func (m *Mux) Close(err error) { m.fail(err) }

// Stopped is closed once the mux will not call Stream.Send again (after
// Close, or once the stream failed): the caller may then close the
// stream's sending side.
func (m *Mux) Stopped() <-chan struct{} { return m.writerDone }

// Err is why the mux died, nil while it runs.
func (m *Mux) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Links is the number of links open.
func (m *Mux) Links() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.links)
}

// Open opens a link whose first frame is typ, payload (the owner's side).
func (m *Mux) Open(typ ipc.Type, payload []byte) (*Link, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.waitRoomLocked(nil); err != nil {
		return nil, err
	}
	m.last++
	l := newLink(m, m.last)
	m.links[l.id] = l
	m.queueLocked(l.id, typ, payload)
	return l, nil
}

// waitRoomLocked waits while the queue is full; it returns why the mux
// (or l, if not nil) cannot send.
func (m *Mux) waitRoomLocked(l *Link) error {
	for {
		switch {
		case m.err != nil:
			return m.err
		case l != nil && l.ended:
			return l.endErr
		case len(m.queue) < m.cfg.MaxQueuedBytes:
			return nil
		}
		m.room.Wait()
	}
}

func (m *Mux) queueLocked(link uint64, typ ipc.Type, payload []byte) {
	m.queue = peerwire.AppendSub(m.queue, peerwire.Sub{Link: link, Type: typ, Payload: payload})
	m.cuts = append(m.cuts, len(m.queue))
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// write sends what is queued, as batches: whatever was queued while the
// last batch was being sent goes in the next.
func (m *Mux) write() {
	defer close(m.writerDone)
	var buf []byte
	for {
		select {
		case <-m.kick:
		case <-m.dead:
			return
		}
		for {
			m.mu.Lock()
			if m.err != nil {
				m.mu.Unlock()
				return
			}
			if len(m.queue) == 0 {
				m.mu.Unlock()
				break
			}
			buf = m.takeLocked(buf[:0])
			m.room.Broadcast()
			m.mu.Unlock()
			if err := m.s.Send(buf); err != nil {
				m.fail(err)
				return
			}
		}
	}
}

// takeLocked moves the next batch from the queue to buf: whole subs, at
// most MaxBatchBytes unless the first is larger.
func (m *Mux) takeLocked(buf []byte) []byte {
	if len(m.queue) <= m.cfg.MaxBatchBytes {
		buf, m.queue = m.queue, buf
		m.queue, m.cuts = m.queue[:0], m.cuts[:0]
		return buf
	}
	n := 1
	for n < len(m.cuts) && m.cuts[n] <= m.cfg.MaxBatchBytes {
		n++
	}
	size := m.cuts[n-1]
	buf = append(buf, m.queue[:size]...)
	m.queue = m.queue[:copy(m.queue, m.queue[size:])]
	m.cuts = m.cuts[:copy(m.cuts, m.cuts[n:])]
	for i := range m.cuts {
		m.cuts[i] -= size
	}
	return buf
}

// fail ends the mux and its links with err (the first error sticks).
func (m *Mux) fail(err error) {
	m.mu.Lock()
	if m.err != nil {
		m.mu.Unlock()
		return
	}
	m.err = err
	links := m.links
	m.links = map[uint64]*Link{}
	m.queue, m.cuts = nil, nil
	close(m.dead)
	m.room.Broadcast()
	m.mu.Unlock()
	for _, l := range links {
		l.end(err)
	}
}

func (m *Mux) deliverBatch(b []byte) error {
	subs, err := peerwire.DecodeBatch(b)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	for _, s := range subs {
		if err := m.deliver(s); err != nil {
			return err
		}
	}
	return nil
}

func (m *Mux) deliver(s peerwire.Sub) error {
	m.mu.Lock()
	l := m.links[s.Link]
	if l == nil {
		switch {
		case s.Link <= m.last:
			m.mu.Unlock()
			return nil // a late frame of a link that ended
		case m.cfg.Accept == nil:
			m.mu.Unlock()
			return fmt.Errorf("%w: a frame for link %d, which this host never opened", ErrProtocol, s.Link)
		case s.Type != ipc.TypePeerExec:
			m.mu.Unlock()
			return fmt.Errorf("%w: link %d starts with a %s frame, not an exec", ErrProtocol, s.Link, s.Type)
		case len(m.links) >= m.cfg.MaxLinks:
			m.mu.Unlock()
			return fmt.Errorf("%w: more than %d links open", ErrProtocol, m.cfg.MaxLinks)
		}
		m.last = s.Link
		l = newLink(m, s.Link)
		m.links[l.id] = l
		m.mu.Unlock()
		go m.cfg.Accept(l, s.Type, s.Payload)
		return nil
	}
	if s.Type == ipc.TypePeerEnd {
		delete(m.links, s.Link)
		m.mu.Unlock()
		err := io.EOF
		if len(s.Payload) > 0 {
			err = fmt.Errorf("%w: %s", ErrPeerEnded, s.Payload)
		}
		l.end(err)
		return nil
	}
	m.mu.Unlock()
	if n := int64(len(s.Payload)); !l.push(frame{s.Type, s.Payload}, m.cfg.MaxInboxBytes, m.cfg.MaxInboxTotal) {
		reason := fmt.Sprintf("more than %d MiB of its frames waited to be read here (a sender faster than the link's reader)", m.cfg.MaxInboxBytes>>20)
		if m.inbox.Load()+n > m.cfg.MaxInboxTotal {
			reason = fmt.Sprintf("more than %d MiB of frames waited to be read here on all links", m.cfg.MaxInboxTotal>>20)
		}
		l.Close(fmt.Errorf("%w: %s", ErrBacklog, reason), reason)
	}
	return nil
}

type frame struct {
	typ     ipc.Type
	payload []byte
}

// Link is one task attempt (or an actor's life) on a Mux: its frames, in
// order, each way.
type Link struct {
	m  *Mux
	id uint64

	wake chan struct{} // capacity 1: a frame or the end arrived
	// Guarded by m.mu: ended is set once the link is out of m.links;
	// endErr is why (what Send returns from then on).
	ended  bool
	endErr error
	// Guarded by mu: frames received and not read yet, and why the link
	// ended (returned by Receive once they are read).
	mu      sync.Mutex
	in      []frame
	inBytes int64 // of in's payloads
	err     error
}

func newLink(m *Mux, id uint64) *Link {
	return &Link{m: m, id: id, wake: make(chan struct{}, 1)}
}

// ID is the link's number on its mux.
func (l *Link) ID() uint64 { return l.id }

// Send queues a frame for the other side. It waits only while the mux's
// queue is full; it fails once the link or the mux ended.
func (l *Link) Send(typ ipc.Type, payload []byte) error {
	m := l.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.waitRoomLocked(l); err != nil {
		return err
	}
	m.queueLocked(l.id, typ, payload)
	return nil
}

// Receive returns the link's next frame. Once the link ended it returns
// why: io.EOF if the other side ended it without a reason, an
// ErrPeerEnded with its reason, the stream's error, or what Close was
// given.
func (l *Link) Receive() (ipc.Type, []byte, error) {
	for {
		l.mu.Lock()
		if len(l.in) > 0 {
			f := l.in[0]
			l.in[0] = frame{}
			l.in = l.in[1:]
			if l.err == nil {
				l.inBytes -= int64(len(f.payload))
				l.m.inbox.Add(-int64(len(f.payload)))
			}
			l.mu.Unlock()
			return f.typ, f.payload, nil
		}
		if err := l.err; err != nil {
			l.mu.Unlock()
			return 0, nil, err
		}
		l.mu.Unlock()
		<-l.wake
	}
}

// Close ends the link: the other side's Receive returns io.EOF (or an
// ErrPeerEnded with reason, if one is given), this side's returns err
// (ErrLinkEnded if nil) after the frames already received. Frames still
// queued to send go first. Closing an ended link does nothing.
func (l *Link) Close(err error, reason string) {
	if err == nil {
		err = ErrLinkEnded
	}
	m := l.m
	m.mu.Lock()
	if l.ended || m.err != nil {
		m.mu.Unlock()
		l.end(err)
		return
	}
	delete(m.links, l.id)
	m.queueLocked(l.id, ipc.TypePeerEnd, []byte(reason))
	m.mu.Unlock()
	l.end(err)
}

// push adds a received frame to the link's unread ones, unless it would
// take a backlog past max bytes, or all links' past total: then it reports
// false and keeps nothing (the caller ends the link).
func (l *Link) push(f frame, max, total int64) bool {
	n := int64(len(f.payload))
	l.mu.Lock()
	if l.err == nil {
		// A frame that finds nothing waiting is kept whatever its size
		// (one message bounds it): the bounds are on a backlog.
		inbox := l.m.inbox.Load()
		if (l.inBytes > 0 && l.inBytes+n > max) || (inbox > 0 && inbox+n > total) {
			l.mu.Unlock()
			return false
		}
		if len(l.in) > 0 {
			// It will wait behind others: a copy of its own, so that it
			// does not keep the whole batch it came in alive (a link that
			// is not read would otherwise hold a batch per frame).
			f.payload = append([]byte(nil), f.payload...)
		}
		l.in = append(l.in, f)
		l.inBytes += n
		l.m.inbox.Add(n)
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return true
}

// end marks l ended with err (the first error sticks). Called without
// m.mu held; l is already out of m.links.
func (l *Link) end(err error) {
	l.m.mu.Lock()
	if !l.ended {
		l.ended, l.endErr = true, err
	}
	err = l.endErr       // the first sticks, the same on both sides
	l.m.room.Broadcast() // a Send waiting for room gives up
	l.m.mu.Unlock()
	l.mu.Lock()
	if l.err == nil {
		l.err = err
		// Its unread frames stay readable, but count no more against the
		// mux's bound: a reader may never come back for them.
		l.m.inbox.Add(-l.inBytes)
		l.inBytes = 0
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}
