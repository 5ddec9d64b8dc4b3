package guard

import (
	"crypto/subtle"
	"fmt"
	"io"
	"math"
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

// Config is what a Guard needs of the host's configuration.
type Config struct {
	// Token is the users' API token; "" lets TaskService calls in without
	// one.
	Token string
	// PeerKey keys the credentials of cluster members (PeerKey()).
	PeerKey []byte
	// Self is the address members call this host at: their credential
	// and this host's proof are bound to it.
	Self string
	// RegisterRate and RegisterBurst limit RegisterModule per client IP
	// address: RegisterRate calls per second on average, RegisterBurst at
	// once (both must be set; 0 refuses every RegisterModule).
	RegisterRate  float64
	RegisterBurst int
	// BodyReadTimeout bounds reading the body of a call whose request is
	// one message (0: no bound; a refused call's body still gets 10 s).
	BodyReadTimeout time.Duration
	// BodyRead, when set (tests), counts the bytes read from request
	// bodies.
	BodyRead *atomic.Int64
}

// Guard checks calls before the handlers it wraps see them. Its methods are
// safe for concurrent use.
type Guard struct {
	user        []byte // "Bearer <token>"; nil: no token needed
	peer        []byte // the credential members send to this host
	proof       string // this host's answer to members (PeerProof)
	register    *rateLimiter
	bodyTimeout time.Duration
	errors      *connect.ErrorWriter
	bodyRead    *atomic.Int64
}

// New returns the guard of cfg.
func New(cfg Config) (*Guard, error) {
	if cfg.RegisterRate < 0 || math.IsNaN(cfg.RegisterRate) || math.IsInf(cfg.RegisterRate, 0) || cfg.RegisterBurst < 0 || cfg.BodyReadTimeout < 0 {
		return nil, fmt.Errorf("%w: RegisterRate and RegisterBurst must be finite and >= 0, BodyReadTimeout >= 0", ErrInvalidConfig)
	}
	g := &Guard{peer: []byte(PeerCredential(cfg.PeerKey, cfg.Self)), proof: PeerProof(cfg.PeerKey, cfg.Self), bodyTimeout: cfg.BodyReadTimeout,
		register: newRateLimiter(cfg.RegisterRate, cfg.RegisterBurst), errors: connect.NewErrorWriter(), bodyRead: cfg.BodyRead}
	if cfg.Token != "" {
		g.user = []byte("Bearer " + cfg.Token)
	}
	return g, nil
}

// Wrap returns next behind the guard.
func (g *Guard) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { g.serve(w, r, next) })
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

func (g *Guard) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	if g.bodyRead != nil {
		r.Body = &countingBody{ReadCloser: r.Body, n: g.bodyRead}
	}
	proc := r.URL.Path
	member := subtle.ConstantTimeCompare([]byte(r.Header.Get(PeerHeader)), g.peer) == 1
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
		w.Header().Set(PeerProofHeader, g.proof)
	}
	// Who calls, for the handlers: sessions belong to a principal.
	r = r.WithContext(WithPrincipal(r.Context(), Principal(r, member)))
	if proc == rayhostv1connect.TaskServiceRegisterModuleProcedure && !g.register.allow(ClientIP(r)) {
		g.refuse(w, r, connect.CodeResourceExhausted, fmt.Errorf("%w: RegisterModule from %s", ErrRateLimited, ClientIP(r)))
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
	next.ServeHTTP(w, r)
}

// refuse answers a call with err, in the call's protocol when it is one
// Connect speaks, without reading its body.
func (g *Guard) refuse(w http.ResponseWriter, r *http.Request, code connect.Code, err error) {
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
