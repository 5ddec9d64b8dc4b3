package host

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/reflect/protoreflect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
)

// Errors of the API's front door.
var (
	// ErrUnauthenticated: a call without the API token (or, to the peer
	// service, without a member's credential).
	ErrUnauthenticated = errors.New("host: missing or wrong token")
	// ErrRateLimited: a client called RegisterModule faster than
	// Config.RegisterRate allows.
	ErrRateLimited = errors.New("host: too many calls, slow down")
)

// peerHeader carries a host's credential on its calls to another member.
// The credential is derived from the cluster secret and bound to the
// address called (see peerCredential): a member that receives one cannot
// replay it to another host.
const peerHeader = "Rayhost-Peer"

// peerProofHeader carries a host's answer to a member's call: proof that
// the host answering holds the cluster secret too (see peerProof). A host
// uses a member (places work on it, pulls from it, sends it modules) only
// once it has given this proof.
const peerProofHeader = "Rayhost-Peer-Proof"

// peerKey derives the key of peer credentials from the cluster secret: the
// gossip key when there is one (every member proved it holds it by joining);
// else, on a loopback cluster without a key, the API token, which hosts of
// a cluster share. With neither there is no secret: the label alone keys
// the credential, which then only tells a host from a client that does not
// try (such a host's API is open to anyone on the machine anyway).
func peerKey(cfg *Config) []byte {
	var secret []byte
	switch {
	case cfg.Cluster != nil && len(cfg.Cluster.Gossip.EncryptKey) > 0:
		secret = cfg.Cluster.Gossip.EncryptKey
	case cfg.Token != "":
		secret = []byte(cfg.Token)
	}
	m := hmac.New(sha256.New, []byte("rayhost peer credential v1"))
	m.Write(secret)
	return m.Sum(nil)
}

// peerCredential is the credential a member sends on calls to the host
// whose API is at addr.
func peerCredential(key []byte, addr string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("call to " + addr))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// peerProof is what the host whose API is at addr answers members with.
func peerProof(key []byte, addr string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("answer from " + addr))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// peerInterceptor adds a member's credential for the host at one address
// to every call to it.
type peerInterceptor string

func (p peerInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set(peerHeader, string(p))
		return next(ctx, req)
	}
}

func (p peerInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set(peerHeader, string(p))
		return conn
	}
}

func (p peerInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// guard is the API's front door, an http.Handler in front of the Connect
// handlers: it checks a call's credentials from its headers alone, before
// any byte of its body is read or decompressed, rate-limits
// RegisterModule, and bounds how long reading a one-message body may take.
//
// The TaskService takes "Authorization: Bearer <token>" (when the host has
// a token) or a member's credential; the PeerService takes only a member's
// credential, never the users' token.
type guard struct {
	next        http.Handler
	user        []byte // "Bearer <token>"; nil: no token needed
	peer        []byte // the credential members send to this host
	proof       string // this host's answer to members (peerProof)
	register    *rateLimiter
	bodyTimeout time.Duration
	errors      *connect.ErrorWriter
	bodyRead    *atomic.Int64 // tests: bytes read from request bodies
}

func newGuard(next http.Handler, cfg *Config, self string) *guard {
	key := peerKey(cfg)
	g := &guard{next: next, peer: []byte(peerCredential(key, self)), proof: peerProof(key, self), bodyTimeout: cfg.BodyReadTimeout,
		register: newRateLimiter(cfg.RegisterRate, cfg.RegisterBurst), errors: connect.NewErrorWriter(), bodyRead: cfg.bodyRead}
	if cfg.Token != "" {
		g.user = []byte("Bearer " + cfg.Token)
	}
	return g
}

// clientStreaming are the procedures whose request body is a stream of
// messages that may last as long as the call: no body deadline for them.
var clientStreaming = func() map[string]bool {
	out := map[string]bool{}
	for _, fd := range []protoreflect.FileDescriptor{rayhostv1.File_rayhost_v1_task_proto, rayhostv1.File_rayhost_v1_peer_proto} {
		svcs := fd.Services()
		for i := range svcs.Len() {
			svc := svcs.Get(i)
			for j := range svc.Methods().Len() {
				m := svc.Methods().Get(j)
				if m.IsStreamingClient() {
					out["/"+string(svc.FullName())+"/"+string(m.Name())] = true
				}
			}
		}
	}
	return out
}()

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.bodyRead != nil {
		r.Body = &countingBody{ReadCloser: r.Body, n: g.bodyRead}
	}
	proc := r.URL.Path
	member := subtle.ConstantTimeCompare([]byte(r.Header.Get(peerHeader)), g.peer) == 1
	toPeer := strings.HasPrefix(proc, "/"+rayhostv1connect.PeerServiceName+"/")
	switch {
	case toPeer && !member:
		g.refuse(w, r, connect.CodeUnauthenticated, fmt.Errorf("%w: the peer service takes only a cluster member's credential", ErrUnauthenticated))
		return
	case !member && g.user != nil && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), g.user) != 1:
		g.refuse(w, r, connect.CodeUnauthenticated, ErrUnauthenticated)
		return
	}
	if member {
		w.Header().Set(peerProofHeader, g.proof)
	}
	if proc == rayhostv1connect.TaskServiceRegisterModuleProcedure && !g.register.allow(clientIP(r)) {
		g.refuse(w, r, connect.CodeResourceExhausted, fmt.Errorf("%w: RegisterModule from %s", ErrRateLimited, clientIP(r)))
		return
	}
	if g.bodyTimeout > 0 && !clientStreaming[proc] {
		rc := http.NewResponseController(w)
		if rc.SetReadDeadline(time.Now().Add(g.bodyTimeout)) == nil {
			// Cleared once the body is read: the response may take long
			// (a Get that waits, a Run that streams output).
			r.Body = &deadlineBody{ReadCloser: r.Body, clear: func() { _ = rc.SetReadDeadline(time.Time{}) }}
		}
	}
	g.next.ServeHTTP(w, r)
}

// refuse answers a call with err, in the call's protocol when it is one
// Connect speaks, without reading its body.
func (g *guard) refuse(w http.ResponseWriter, r *http.Request, code connect.Code, err error) {
	// The body stays unread, and net/http drains it (up to 256 KiB)
	// before answering, without a deadline: a stranger that announces a
	// body and stalls would hold the connection (and a slot of the cap)
	// unanswered for good. The drain gets the body read deadline.
	d := g.bodyTimeout
	if d <= 0 {
		d = refusedDrainTimeout
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
	if g.errors.IsSupported(r) {
		_ = g.errors.Write(w, r, connect.NewError(code, err))
		return
	}
	status := http.StatusUnauthorized
	if code == connect.CodeResourceExhausted {
		status = http.StatusTooManyRequests
	}
	http.Error(w, err.Error(), status)
}

// refusedDrainTimeout bounds the drain of a refused call's body when the
// host has no body read deadline.
const refusedDrainTimeout = 10 * time.Second

// clientIP is the IP address a request came from.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// countingBody counts the bytes read from a request body (tests).
type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// deadlineBody clears the body's read deadline once the body is read
// (io.EOF), and only then: a body left unread keeps it, so that the
// server's draining of it after the handler fails too instead of waiting
// for a client that sends nothing.
type deadlineBody struct {
	io.ReadCloser
	clear func()
	once  sync.Once
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		// Read whole. After any other error (the deadline passed) the
		// deadline stays: reads that drain the body must fail too.
		b.done()
	}
	return n, err
}

func (b *deadlineBody) done() { b.once.Do(b.clear) }

// rateLimiter is a token bucket per key (a client's IP address).
type rateLimiter struct {
	rate, burst float64
	mu          sync.Mutex
	buckets     map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxRateKeys bounds the keys a rateLimiter tracks; past it, full buckets
// are forgotten, and if none is, new keys share one.
const maxRateKeys = 10_000

func newRateLimiter(rate float64, burst int) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(burst), buckets: map[string]*bucket{}}
}

func (l *rateLimiter) allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxRateKeys {
			for k, x := range l.buckets {
				if x.tokens+now.Sub(x.last).Seconds()*l.rate >= l.burst {
					delete(l.buckets, k)
				}
			}
			if len(l.buckets) >= maxRateKeys {
				key = "" // everyone else shares one bucket
			}
		}
		if b = l.buckets[key]; b == nil {
			b = &bucket{tokens: l.burst, last: now}
			l.buckets[key] = b
		}
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// capListener caps the open connections: one more is closed as soon as it
// is accepted, so clients see it refused at once instead of hanging in the
// kernel's backlog (what golang.org/x/net/netutil.LimitListener does).
type capListener struct {
	net.Listener
	slots   chan struct{}
	refused atomic.Int64
	onFull  func(refused int64)
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &capConn{Conn: c, release: func() { <-l.slots }}, nil
		default:
			_ = c.Close()
			if n := l.refused.Add(1); n&(n-1) == 0 && l.onFull != nil { // 1, 2, 4, 8, ...
				l.onFull(n)
			}
		}
	}
}

type capConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *capConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// exposed reports whether addr listens beyond loopback.
func exposed(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return !ok || !tcp.IP.IsLoopback()
}
