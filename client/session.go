// This file holds the Client's session on its host: the ID sent with every
// call, the refs the Client tracks (an ObjectRef's handle), and the
// goroutine that sends their releases in batches and keeps the session
// alive.

package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
)

// sessionHeader carries the session's ID (proto/rayhost/v1/task.proto).
const sessionHeader = "Rayhost-Session"

// The session's timings and batch size (fields of session, so that tests
// can change them).
const (
	// releaseBatch: this many releases waiting are sent at once.
	releaseBatch = 256
	// releaseDelay: else they go this long after the first one.
	releaseDelay = 100 * time.Millisecond
	// firstKeepAlive: the keepalive interval until the host said its TTL
	// (the first call asks at once).
	firstKeepAlive = 20 * time.Second
	// maxReleasePerCall bounds one Release call (ObjectRefs of ~100 bytes).
	maxReleasePerCall = 50_000
	// backgroundTimeout bounds the session's own calls; closeTimeout the
	// EndSession of Close.
	backgroundTimeout = 30 * time.Second
	closeTimeout      = 5 * time.Second
)

// session is a Client's session. It never references its Client, so that
// a Client nobody uses any more is collected (and its session's goroutine
// stopped) even if it was not closed.
type session struct {
	id  string
	svc rayhostv1connect.TaskServiceClient // set once, before run

	batch int
	delay time.Duration

	// lastCall is when the last call was sent (unix ns); 0: none yet, and
	// the host knows no such session.
	lastCall atomic.Int64
	closed   atomic.Bool

	mu      sync.Mutex
	pending []string // IDs whose release waits to be sent
	stopped bool

	kick  chan struct{} // releases are pending
	first chan struct{} // the first call was sent
	// ctx is the context of the session's own calls, cancelled (cancel)
	// when it stops.
	ctx    context.Context
	cancel context.CancelFunc
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

func newSession() *session {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	ctx, cancel := context.WithCancel(context.Background())
	return &session{id: hex.EncodeToString(b[:]), batch: releaseBatch, delay: releaseDelay, ctx: ctx, cancel: cancel,
		kick: make(chan struct{}, 1), first: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// sent notes a call about to be sent.
func (s *session) sent() {
	if s.lastCall.Swap(time.Now().UnixNano()) == 0 {
		signal(s.first)
	}
}

// The session is the Client's interceptor: every call carries its ID;
// after Close, calls fail with ErrClosed (but Close's own EndSession).

func (s *session) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if s.closed.Load() && req.Spec().Procedure != rayhostv1connect.TaskServiceEndSessionProcedure {
			return nil, ErrClosed
		}
		req.Header().Set(sessionHeader, s.id)
		s.sent()
		return next(ctx, req)
	}
}

func (s *session) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		if s.closed.Load() {
			return closedConn{conn}
		}
		conn.RequestHeader().Set(sessionHeader, s.id)
		s.sent()
		return conn
	}
}

func (s *session) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// closedConn is a stream of a closed Client: it sends nothing.
type closedConn struct{ connect.StreamingClientConn }

func (closedConn) Send(any) error       { return ErrClosed }
func (closedConn) Receive(any) error    { return ErrClosed }
func (closedConn) CloseRequest() error  { return nil }
func (closedConn) CloseResponse() error { return nil }

// refState is what a tracked ref's cleanup needs; the handle points to
// it, never the other way (a cleanup must not reach its object).
type refState struct {
	s    *session
	id   string
	done atomic.Bool // released (by Release or the cleanup)
}

// refHandle is shared by the copies of one ObjectRef the Client made.
// When none is left, its cleanup releases the ref.
type refHandle struct{ st *refState }

// track returns the handle of a ref the session holds.
func (s *session) track(id string) *refHandle {
	st := &refState{s: s, id: id}
	h := &refHandle{st: st}
	runtime.AddCleanup(h, (*refState).release, st)
	return h
}

// release queues the ref's release, once.
func (st *refState) release() {
	if st.done.CompareAndSwap(false, true) {
		st.s.enqueue(st.id)
	}
}

// enqueue queues ids' releases for the next batch.
func (s *session) enqueue(ids ...string) {
	s.mu.Lock()
	if s.stopped {
		// Closed (the session released everything) or collected.
		s.mu.Unlock()
		return
	}
	before := len(s.pending)
	s.pending = append(s.pending, ids...)
	n := len(s.pending)
	s.mu.Unlock()
	if before == 0 || n >= s.batch {
		signal(s.kick)
	}
}

func (s *session) pendingLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// run sends the releases (a batch when enough wait, else a short delay
// after the first) and keeps the session alive: a KeepAlive after the
// first call, to learn the host's TTL, then one each third of it without
// a call.
func (s *session) run() {
	defer close(s.done)
	interval := firstKeepAlive
	keep := time.NewTimer(interval)
	defer keep.Stop()
	flush := time.NewTimer(time.Hour)
	flush.Stop()
	defer flush.Stop()
	flushing, keepAlive := false, true
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
			if n := s.pendingLen(); n >= s.batch {
				s.flush()
			} else if n > 0 && !flushing {
				flushing = true
				flush.Reset(s.delay)
			}
		case <-flush.C:
			flushing = false
			s.flush() // what fails waits for the next release or keepalive
		case <-s.first:
			if keepAlive {
				interval, keepAlive = s.keepAlive(interval)
				keep.Reset(interval)
			}
		case <-keep.C:
			if last := s.lastCall.Load(); keepAlive && last != 0 && time.Since(time.Unix(0, last)) >= interval {
				interval, keepAlive = s.keepAlive(interval)
			}
			if !flushing && s.pendingLen() > 0 {
				s.flush()
			}
			keep.Reset(interval)
		}
	}
}

// keepAlive keeps the session alive and returns the interval to the next
// one: a third of the host's TTL. false: the host has no sessions (an
// older host), stop.
func (s *session) keepAlive(interval time.Duration) (time.Duration, bool) {
	ctx, cancel := context.WithTimeout(s.ctx, backgroundTimeout)
	defer cancel()
	res, err := s.svc.KeepAlive(ctx, connect.NewRequest(&rayhostv1.KeepAliveRequest{}))
	switch {
	case connect.CodeOf(err) == connect.CodeUnimplemented:
		return interval, false
	case err != nil:
		return interval, true // tried again at the next tick
	}
	if ttl := time.Duration(res.Msg.GetTtlMs()) * time.Millisecond; ttl > 0 {
		interval = max(ttl/3, 10*time.Millisecond)
	}
	return interval, true
}

// flush sends the pending releases. Those a call could not deliver (the
// host unreachable) wait for the next flush; an older host without
// Release drops them.
func (s *session) flush() {
	s.mu.Lock()
	ids := s.pending
	s.pending = nil
	s.mu.Unlock()
	for len(ids) > 0 {
		n := min(len(ids), maxReleasePerCall)
		req := &rayhostv1.ReleaseRequest{Refs: make([]*rayhostv1.ObjectRef, n)}
		for i, id := range ids[:n] {
			req.Refs[i] = &rayhostv1.ObjectRef{Id: id}
		}
		ctx, cancel := context.WithTimeout(s.ctx, backgroundTimeout)
		_, err := s.svc.Release(ctx, connect.NewRequest(req))
		cancel()
		if err != nil && retriable(err) {
			s.requeue(ids)
			return
		}
		ids = ids[n:]
	}
}

// retriable: a call that may work later (the host or the network was
// down), as opposed to one the host refused.
func retriable(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeDeadlineExceeded, connect.CodeCanceled, connect.CodeUnknown, connect.CodeResourceExhausted:
		return true
	}
	return false
}

func (s *session) requeue(ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.pending = append(ids, s.pending...)
	}
}

// stopLoop tells the goroutine to stop and drops what waits, without waiting
// (a Client's cleanup must not block).
func (s *session) stopLoop() {
	s.once.Do(func() {
		s.mu.Lock()
		s.stopped, s.pending = true, nil
		s.mu.Unlock()
		s.cancel()
		close(s.stop)
	})
}

// shutdown stops the goroutine and waits for it.
func (s *session) shutdown() {
	s.stopLoop()
	<-s.done
}

// close ends the session: the host releases everything it holds.
func (s *session) close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	s.shutdown()
	if s.lastCall.Load() == 0 {
		return nil // the host never heard of it
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	_, err := s.svc.EndSession(ctx, connect.NewRequest(&rayhostv1.EndSessionRequest{}))
	if err != nil && connect.CodeOf(err) != connect.CodeUnimplemented {
		return fromConnect(err)
	}
	return nil
}

// ErrClosed: a call on a Client after Close.
var ErrClosed = errors.New("client: closed")
