package guard_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/host/internal/guard"
)

// hangGuard bounds waits for what must happen; never a speed check.
const hangGuard = time.Minute

const token = "s3cret"

// recorder is the handler behind the guard: it reads each body whole and
// counts the calls that reach it.
type recorder struct {
	calls atomic.Int64
	err   chan error // the outcome of each body read, when set
}

func (h *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.calls.Add(1)
	_, err := io.Copy(io.Discard, r.Body)
	if h.err != nil {
		h.err <- err
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusOK)
}

type server struct {
	*httptest.Server
	rec  *recorder
	read *atomic.Int64
	key  []byte
	self string
}

// start serves a recorder behind a guard with cfg (Token, PeerKey, Self and
// BodyRead filled in when unset) on a real loopback socket.
func start(t *testing.T, cfg guard.Config) *server {
	t.Helper()
	s := &server{rec: &recorder{}, read: &atomic.Int64{}}
	ts := httptest.NewUnstartedServer(nil)
	s.self = ts.Listener.Addr().String()
	if cfg.PeerKey == nil {
		cfg.PeerKey = guard.PeerKey([]byte("0123456789abcdef0123456789abcdef"), cfg.Token)
	}
	if cfg.Self == "" {
		cfg.Self = s.self
	}
	if cfg.BodyRead == nil {
		cfg.BodyRead = s.read
	}
	s.key = cfg.PeerKey
	g, err := guard.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = g.Wrap(s.rec)
	ts.Start()
	t.Cleanup(ts.Close)
	s.Server = ts
	return s
}

// post sends body to procedure with headers and returns the response's
// status, its Connect error code (if any) and its headers.
func post(t *testing.T, url, procedure string, headers map[string]string, body []byte) (int, string, http.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), hangGuard)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+procedure, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/proto")
	req.Header.Set("Connect-Protocol-Version", "1")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	code := ""
	if res.StatusCode != http.StatusOK {
		if i := bytes.Index(b, []byte(`"code":"`)); i >= 0 {
			code = string(b[i+8:])
			code = code[:strings.IndexByte(code, '"')]
		}
	}
	return res.StatusCode, code, res.Header
}

func gzipBomb(t *testing.T, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zero := make([]byte, 1<<20)
	for ; n > 0; n -= len(zero) {
		if _, err := zw.Write(zero[:min(n, len(zero))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestAuthBeforeBody: calls without the token, with a wrong one, or with
// the users' token to the peer service are refused from their headers: no
// byte of their bodies is read and the handler never sees them.
func TestAuthBeforeBody(t *testing.T) {
	s := start(t, guard.Config{Token: token, RegisterRate: 1, RegisterBurst: 10})
	bomb := gzipBomb(t, 64<<20)
	for _, tt := range []struct {
		name, proc string
		headers    map[string]string
	}{
		{"no token", rayhostv1connect.TaskServicePutProcedure, nil},
		{"wrong token", rayhostv1connect.TaskServicePutProcedure, map[string]string{"Authorization": "Bearer guess"}},
		{"token without Bearer", rayhostv1connect.TaskServicePutProcedure, map[string]string{"Authorization": token}},
		{"token as a prefix", rayhostv1connect.TaskServicePutProcedure, map[string]string{"Authorization": "Bearer " + token + "x"}},
		{"register without a token", rayhostv1connect.TaskServiceRegisterModuleProcedure, nil},
		{"peer service without anything", rayhostv1connect.PeerServiceLocateProcedure, nil},
		{"peer service with the users' token", rayhostv1connect.PeerServiceLocateProcedure, map[string]string{"Authorization": "Bearer " + token}},
		{"peer service with a forged credential", rayhostv1connect.PeerServiceLocateProcedure, map[string]string{guard.PeerHeader: "AAAA"}},
		{"peer service with another host's credential", rayhostv1connect.PeerServiceLocateProcedure,
			map[string]string{guard.PeerHeader: guard.PeerCredential(s.key, "127.0.0.1:1")}},
		{"peer service with this host's proof", rayhostv1connect.PeerServiceLocateProcedure,
			map[string]string{guard.PeerHeader: guard.PeerProof(s.key, s.self)}},
		{"peer service with a credential of another key", rayhostv1connect.PeerServiceLocateProcedure,
			map[string]string{guard.PeerHeader: guard.PeerCredential(guard.PeerKey(nil, token), s.self)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{"Content-Encoding": "gzip"}
			for k, v := range tt.headers {
				h[k] = v
			}
			status, code, hdr := post(t, s.URL, tt.proc, h, bomb)
			if status != http.StatusUnauthorized || code != "unauthenticated" {
				t.Fatalf("HTTP %d %q, want 401 unauthenticated", status, code)
			}
			if hdr.Get(guard.PeerProofHeader) != "" {
				t.Fatal("a refused call got this host's proof")
			}
		})
	}
	if n := s.read.Load(); n != 0 {
		t.Fatalf("read %d bytes of refused bodies, want 0", n)
	}
	if n := s.rec.calls.Load(); n != 0 {
		t.Fatalf("the handler saw %d refused calls", n)
	}
	// The guard still lets the right calls in.
	if status, _, _ := post(t, s.URL, rayhostv1connect.TaskServicePutProcedure, map[string]string{"Authorization": "Bearer " + token}, []byte("x")); status != http.StatusOK {
		t.Fatalf("a call with the token: HTTP %d", status)
	}
}

// TestMembers: a member's credential for this host's address opens both
// services, and only a member's answers carry this host's proof.
func TestMembers(t *testing.T) {
	s := start(t, guard.Config{Token: token, RegisterRate: 1, RegisterBurst: 10})
	cred := map[string]string{guard.PeerHeader: guard.PeerCredential(s.key, s.self)}
	for _, proc := range []string{rayhostv1connect.PeerServiceLocateProcedure, rayhostv1connect.TaskServiceHealthProcedure} {
		status, _, hdr := post(t, s.URL, proc, cred, []byte("x"))
		if status != http.StatusOK {
			t.Fatalf("%s with a member's credential: HTTP %d", proc, status)
		}
		if got, want := hdr.Get(guard.PeerProofHeader), guard.PeerProof(s.key, s.self); got != want {
			t.Fatalf("%s: proof %q, want %q", proc, got, want)
		}
	}
	status, _, hdr := post(t, s.URL, rayhostv1connect.TaskServiceHealthProcedure, map[string]string{"Authorization": "Bearer " + token}, nil)
	if status != http.StatusOK || hdr.Get(guard.PeerProofHeader) != "" {
		t.Fatalf("a user's call: HTTP %d, proof %q (want none)", status, hdr.Get(guard.PeerProofHeader))
	}
}

// TestNoToken: without a token the TaskService is open, the PeerService
// still is not.
func TestNoToken(t *testing.T) {
	s := start(t, guard.Config{RegisterRate: 1, RegisterBurst: 10})
	if status, _, _ := post(t, s.URL, rayhostv1connect.TaskServiceHealthProcedure, nil, nil); status != http.StatusOK {
		t.Fatalf("TaskService without a token on a host without one: HTTP %d", status)
	}
	if _, code, _ := post(t, s.URL, rayhostv1connect.PeerServiceLocateProcedure, nil, nil); code != "unauthenticated" {
		t.Fatalf("PeerService without a credential: %q", code)
	}
}

// TestPeerInterceptor: a Connect client with the interceptor of this
// host's credential gets through to a real PeerService handler (which
// answers unimplemented); without it, it is refused.
func TestPeerInterceptor(t *testing.T) {
	key := guard.PeerKey([]byte("0123456789abcdef0123456789abcdef"), "")
	ts := httptest.NewUnstartedServer(nil)
	self := ts.Listener.Addr().String()
	g, err := guard.New(guard.Config{PeerKey: key, Self: self, RegisterRate: 1, RegisterBurst: 1})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(rayhostv1connect.NewPeerServiceHandler(rayhostv1connect.UnimplementedPeerServiceHandler{}))
	ts.Config.Handler = g.Wrap(mux)
	ts.Start()
	t.Cleanup(ts.Close)
	for _, tt := range []struct {
		name string
		opts []connect.ClientOption
		want connect.Code
	}{
		{"with the credential", []connect.ClientOption{connect.WithInterceptors(guard.PeerInterceptor(guard.PeerCredential(key, self)))}, connect.CodeUnimplemented},
		{"with another host's", []connect.ClientOption{connect.WithInterceptors(guard.PeerInterceptor(guard.PeerCredential(key, "10.0.0.1:7")))}, connect.CodeUnauthenticated},
		{"without", nil, connect.CodeUnauthenticated},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pc := rayhostv1connect.NewPeerServiceClient(ts.Client(), ts.URL, tt.opts...)
			ctx, cancel := context.WithTimeout(t.Context(), hangGuard)
			defer cancel()
			_, err := pc.Locate(ctx, connect.NewRequest(&rayhostv1.LocateRequest{Id: "x"}))
			if got := connect.CodeOf(err); got != tt.want {
				t.Fatalf("unary: %v, want %v", err, tt.want)
			}
			stream, err := pc.FetchModule(ctx, connect.NewRequest(&rayhostv1.FetchModuleRequest{Digest: "x"}))
			if err == nil {
				for stream.Receive() {
				}
				err = stream.Err()
				stream.Close()
			}
			if got := connect.CodeOf(err); got != tt.want {
				t.Fatalf("server stream: %v, want %v", err, tt.want)
			}
		})
	}
}

// TestRegisterRate: RegisterModule past the burst is refused per client
// address with resource_exhausted; other procedures are not limited.
func TestRegisterRate(t *testing.T) {
	s := start(t, guard.Config{Token: token, RegisterRate: 0.001, RegisterBurst: 3})
	auth := map[string]string{"Authorization": "Bearer " + token}
	for i := range 3 {
		if status, _, _ := post(t, s.URL, rayhostv1connect.TaskServiceRegisterModuleProcedure, auth, []byte("x")); status != http.StatusOK {
			t.Fatalf("registration %d of a burst of 3: HTTP %d", i+1, status)
		}
	}
	for range 3 {
		status, code, _ := post(t, s.URL, rayhostv1connect.TaskServiceRegisterModuleProcedure, auth, []byte("x"))
		if status != http.StatusTooManyRequests || code != "resource_exhausted" {
			t.Fatalf("past the burst: HTTP %d %q, want 429 resource_exhausted", status, code)
		}
	}
	if status, _, _ := post(t, s.URL, rayhostv1connect.TaskServicePutProcedure, auth, []byte("x")); status != http.StatusOK {
		t.Fatalf("another procedure after the limit: HTTP %d", status)
	}
	// A client that is not Connect gets a plain 429.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL+rayhostv1connect.TaskServiceRegisterModuleProcedure, strings.NewReader("x"))
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a plain POST past the limit: HTTP %d", res.StatusCode)
	}
}

// rawRequest writes req on a new connection to addr and returns the status
// line of the answer ("" if the connection closed without one).
func rawRequest(t *testing.T, addr, req string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(hangGuard)) // a hang guard
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("waiting for an answer: %v", err)
	}
	return strings.TrimSpace(line)
}

// TestStalledBody: a one-message body that stalls fails the handler's read
// once BodyReadTimeout passes; a client stream's body is not bounded.
func TestStalledBody(t *testing.T) {
	s := start(t, guard.Config{Token: token, RegisterRate: 1, RegisterBurst: 1, BodyReadTimeout: 200 * time.Millisecond})
	s.rec.err = make(chan error, 1)
	line := rawRequest(t, s.Listener.Addr().String(), "POST "+rayhostv1connect.TaskServicePutProcedure+" HTTP/1.1\r\nHost: x\r\n"+
		"Content-Type: application/proto\r\nAuthorization: Bearer "+token+"\r\nContent-Length: 1000\r\n\r\n0123456789")
	select {
	case err := <-s.rec.err:
		if err == nil {
			t.Fatal("the handler read a stalled body whole")
		}
		t.Logf("handler's read: %v; answer %q", err, line)
	case <-time.After(hangGuard):
		t.Fatal("the handler's read of a stalled body did not fail")
	}
	if strings.Contains(line, " 200 ") {
		t.Fatalf("a stalled body got %q", line)
	}
}

// TestRefusedStalledBody: a stranger that announces a body and sends
// nothing still gets its refusal (the drain of the unread body has a
// deadline), and the handler never runs.
func TestRefusedStalledBody(t *testing.T) {
	s := start(t, guard.Config{Token: token, RegisterRate: 1, RegisterBurst: 1, BodyReadTimeout: 200 * time.Millisecond})
	line := rawRequest(t, s.Listener.Addr().String(), "POST "+rayhostv1connect.TaskServicePutProcedure+" HTTP/1.1\r\nHost: x\r\n"+
		"Content-Type: application/proto\r\nContent-Length: 100000\r\n\r\n")
	if line != "" && !strings.Contains(line, " 401 ") {
		t.Fatalf("a refused stalled call: %q, want 401 or a closed connection", line)
	}
	if n := s.rec.calls.Load(); n != 0 {
		t.Fatalf("the handler saw %d calls", n)
	}
}

func TestNewRefusesConfig(t *testing.T) {
	for _, cfg := range []guard.Config{{RegisterRate: -1}, {RegisterBurst: -1}, {BodyReadTimeout: -1}} {
		if _, err := guard.New(cfg); !errors.Is(err, guard.ErrInvalidConfig) {
			t.Errorf("New(%+v): %v, want ErrInvalidConfig", cfg, err)
		}
	}
}

func TestPeerKey(t *testing.T) {
	gk := []byte("0123456789abcdef0123456789abcdef")
	distinct := map[string]string{
		"gossip key":            string(guard.PeerKey(gk, "")),
		"token":                 string(guard.PeerKey(nil, token)),
		"nothing":               string(guard.PeerKey(nil, "")),
		"another token":         string(guard.PeerKey(nil, "other")),
		"credential for a":      guard.PeerCredential(guard.PeerKey(gk, ""), "a:1"),
		"credential for b":      guard.PeerCredential(guard.PeerKey(gk, ""), "b:1"),
		"proof from a":          guard.PeerProof(guard.PeerKey(gk, ""), "a:1"),
		"credential, other key": guard.PeerCredential(guard.PeerKey(nil, token), "a:1"),
	}
	seen := map[string]string{}
	for name, v := range distinct {
		if other, dup := seen[v]; dup {
			t.Errorf("%s and %s are the same", name, other)
		}
		seen[v] = name
	}
	if !bytes.Equal(guard.PeerKey(gk, token), guard.PeerKey(gk, "")) {
		t.Error("with a gossip key, the token changes the peer key")
	}
}
