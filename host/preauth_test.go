package host_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/testutil"
)

// Attacks on the API by a client that may not even hold the token: bodies
// that expand, bodies too large, slow and many connections, registration
// floods. Each ends with a normal task on the same host.

// gzipBomb returns n zero bytes gzipped (about n/1000 bytes).
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

// rawUnary posts body to a unary procedure as a Connect client would (proto
// codec, optionally gzipped) over plain HTTP/1.1, and returns the Connect
// error code of the answer ("" for a success).
func rawUnary(t *testing.T, addr, procedure, token string, body []byte, gzipped bool) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxFor(t, hangGuard), http.MethodPost, "http://"+addr+procedure, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/proto")
	req.Header.Set("Connect-Protocol-Version", "1")
	if gzipped {
		req.Header.Set("Content-Encoding", "gzip")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	if err != nil {
		t.Fatalf("posting to %s: %v", procedure, err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusOK {
		return ""
	}
	var e struct{ Code, Message string }
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("HTTP %d, not a Connect error: %q", res.StatusCode, b)
	}
	t.Logf("%s: HTTP %d %s: %s", procedure, res.StatusCode, e.Code, e.Message)
	return e.Code
}

// TestPreauthBodies: a gzip bomb without a token is refused unread; with
// the token, a body that is too large (plain, or once decompressed) is
// refused with resource_exhausted.
func TestPreauthBodies(t *testing.T) {
	var read atomic.Int64
	h := testutil.StartHost(t, func(cfg *host.Config) {
		cfg.Token = "s3cret"
		cfg.MaxMessageBytes = 8 << 20
		host.CountBodyBytes(cfg, &read)
	})
	c := client.New(h.Addr(), client.WithToken("s3cret"))
	mod := testutil.Register(t, c, guestPkg)
	bomb := gzipBomb(t, 256<<20) // 256 MiB of zeros in about 250 KB
	t.Logf("gzip bomb: %d bytes, 256 MiB decompressed", len(bomb))

	t.Run("bomb without a token", func(t *testing.T) {
		before := read.Load()
		for _, proc := range []string{rayhostv1connect.TaskServiceRegisterModuleProcedure, rayhostv1connect.TaskServicePutProcedure,
			rayhostv1connect.PeerServiceLocateProcedure} {
			for _, token := range []string{"", "guess"} {
				if code := rawUnary(t, h.Addr(), proc, token, bomb, true); code != "unauthenticated" {
					t.Fatalf("%s with token %q: %q, want unauthenticated", proc, token, code)
				}
			}
		}
		if n := read.Load() - before; n != 0 {
			t.Fatalf("the host read %d bytes of unauthenticated bodies, want 0", n)
		}
	})
	t.Run("the users' token does not open the peer service", func(t *testing.T) {
		if code := rawUnary(t, h.Addr(), rayhostv1connect.PeerServiceLocateProcedure, "s3cret", []byte{}, false); code != "unauthenticated" {
			t.Fatalf("Locate with the users' token: %q, want unauthenticated", code)
		}
	})
	t.Run("bomb with the token", func(t *testing.T) {
		before := read.Load()
		if code := rawUnary(t, h.Addr(), rayhostv1connect.TaskServicePutProcedure, "s3cret", bomb, true); code != "resource_exhausted" {
			t.Fatalf("a body that decompresses past MaxMessageBytes: %q, want resource_exhausted", code)
		}
		if n := read.Load() - before; n > int64(len(bomb)) {
			t.Fatalf("read %d bytes of a %d-byte body", n, len(bomb))
		}
	})
	t.Run("oversize with the token", func(t *testing.T) {
		if code := rawUnary(t, h.Addr(), rayhostv1connect.TaskServicePutProcedure, "s3cret", make([]byte, 9<<20), false); code != "resource_exhausted" {
			t.Fatalf("a body past MaxMessageBytes: %q, want resource_exhausted", code)
		}
	})
	stillServes(t, c, mod)
}

// slowloris opens a connection and sends the start of a request's headers;
// it then sends one more byte every interval until the host closes it. It
// reports on cut once the host has closed the connection.
func slowloris(t *testing.T, addr string, interval time.Duration, cut chan<- error) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("POST /rayhost.v1.TaskService/Health HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	go func() {
		closed := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, conn) // returns when the host closes it
			closed <- err
		}()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case err := <-closed:
				cut <- err
				return
			case <-tick.C:
				_, _ = conn.Write([]byte("X"))
			}
		}
	}()
	return conn
}

// TestPreauthSlowloris: connections that send their headers byte by byte
// are cut off by the header timeout, and Health answers while they are
// open.
func TestPreauthSlowloris(t *testing.T) {
	h := testutil.StartHost(t, func(cfg *host.Config) {
		cfg.Token = "s3cret"
		cfg.ReadHeaderTimeout = 2 * time.Second
	})
	c := client.New(h.Addr(), client.WithToken("s3cret"))
	mod := testutil.Register(t, c, guestPkg)
	const n = 300
	cut := make(chan error, n)
	for range n {
		conn := slowloris(t, h.Addr(), 100*time.Millisecond, cut)
		t.Cleanup(func() { conn.Close() })
	}
	if _, err := c.Health(ctxFor(t, hangGuard)); err != nil {
		t.Fatalf("Health with %d slow connections open: %v", n, err)
	}
	guard := time.After(hangGuard)
	for i := range n {
		select {
		case <-cut:
		case <-guard:
			t.Fatalf("%d of %d slow connections are still open", n-i, n)
		}
	}
	stillServes(t, c, mod)
}

// TestPreauthConnectionCap: past MaxConnections a new connection is closed
// at once, while a client already connected goes on working.
func TestPreauthConnectionCap(t *testing.T) {
	const limit = 8
	h, _, _ := setup(t, func(cfg *host.Config) {
		cfg.MaxConnections = limit
		cfg.ReadHeaderTimeout = hangGuard // the idle ones must stay
	})
	c := client.New(h.Addr())
	mod := testutil.Register(t, c, guestPkg) // c's connection is open now
	var fill []net.Conn
	closeFill := func() {
		for _, f := range fill {
			f.Close()
		}
		fill = nil
	}
	t.Cleanup(closeFill)
	// Fill the other slots (setup's client may hold one too), then more:
	// every connection past the cap is closed by the host.
	refused := 0
	for range limit + 4 {
		conn, err := net.Dial("tcp", h.Addr())
		if err != nil {
			t.Fatal(err)
		}
		fill = append(fill, conn)
	}
	for _, conn := range fill {
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); errors.Is(err, io.EOF) || isReset(err) {
			refused++
		}
	}
	if refused < 4 {
		t.Fatalf("%d of %d connections past a cap of %d were closed, want at least 4", refused, limit+4, limit)
	}
	if _, err := c.Health(ctxFor(t, hangGuard)); err != nil {
		t.Fatalf("a connected client, with the cap reached: %v", err)
	}
	stillServes(t, c, mod)
	// Once they go, new clients get in again.
	closeFill()
	ctx := ctxFor(t, hangGuard)
	for {
		_, err := client.New(h.Addr()).Health(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("a new client after the others closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "broken pipe"))
}

// TestPreauthRegisterRate: RegisterModule past the per-client rate gets
// resource_exhausted; other calls are not limited.
func TestPreauthRegisterRate(t *testing.T) {
	const burst = 3
	_, c, mod := setup(t, func(cfg *host.Config) {
		cfg.RegisterRate = 0.001 // one every 1000 s after the burst
		cfg.RegisterBurst = burst
	})
	wasm := testutil.Guest(t, guestPkg)
	ctx := ctxFor(t, hangGuard)
	var err error
	for i := 1; i < burst; i++ { // setup registered once
		if _, err = c.RegisterModule(ctx, wasm, ""); err != nil {
			t.Fatalf("registration %d of a burst of %d: %v", i+1, burst, err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		wg.Go(func() {
			_, err := c.RegisterModule(ctx, wasm, "")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, client.ErrTooLarge) || !strings.Contains(err.Error(), "too many calls") {
			t.Fatalf("registration past the rate: %v, want resource_exhausted (too many calls)", err)
		}
	}
	stillServes(t, c, mod)
}

// hangGuard bounds a wait for something that must happen: generous, it
// only stops a hang and never asserts speed.
const hangGuard = 2 * time.Minute

// TestPreauthSlowBody: a one-message body that stalls fails once
// BodyReadTimeout passes, headers past MaxHeaderBytes are refused, and
// calls that outlast the body timeout (a Get that waits, a stream) are not
// cut.
func TestPreauthSlowBody(t *testing.T) {
	h := testutil.StartHost(t, func(cfg *host.Config) {
		cfg.Token = "s3cret"
		cfg.BodyReadTimeout = 15 * time.Second // not less: the test guest (5 MB) is registered through it, and took over 5 s on two cores with CPU hogs and other tests beside it
		cfg.MaxHeaderBytes = 8 << 10
	})
	c := client.New(h.Addr(), client.WithToken("s3cret"))
	mod := testutil.Register(t, c, guestPkg)

	t.Run("stalled body", func(t *testing.T) {
		conn, err := net.Dial("tcp", h.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// 1000 bytes announced, 10 sent.
		req := "POST " + rayhostv1connect.TaskServicePutProcedure + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/proto\r\n" +
			"Authorization: Bearer s3cret\r\nContent-Length: 1000\r\n\r\n0123456789"
		if _, err := conn.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(hangGuard))
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("waiting for the host to give up on the body: %v", err)
		}
		if strings.Contains(line, " 200 ") {
			t.Fatalf("a stalled body got %q", line)
		}
		t.Logf("stalled body: %q", strings.TrimSpace(line))
	})
	t.Run("huge headers", func(t *testing.T) {
		conn, err := net.Dial("tcp", h.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		req := "POST " + rayhostv1connect.TaskServiceHealthProcedure + " HTTP/1.1\r\nHost: x\r\nX-Junk: " + strings.Repeat("a", 64<<10) + "\r\n\r\n"
		_, _ = conn.Write([]byte(req))
		_ = conn.SetReadDeadline(time.Now().Add(hangGuard))
		line, _ := bufio.NewReader(conn).ReadString('\n')
		if !strings.Contains(line, " 431 ") {
			t.Fatalf("64 KiB of headers past a limit of 8 KiB: %q, want 431", line)
		}
	})
	t.Run("long calls are not cut", func(t *testing.T) {
		ctx := ctxFor(t, hangGuard)
		ref, err := c.Submit(ctx, mod, "sleep", 8000) // 8 s, past the 5 s body timeout
		if err != nil {
			t.Fatal(err)
		}
		var v int
		if err := c.Get(ctx, ref, &v); err != nil {
			t.Fatalf("a Get that waits past the body timeout: %v", err)
		}
		if err := c.Run(ctx, mod, nil); err != nil && errors.Is(err, client.ErrUnavailable) {
			t.Fatalf("Run: %v", err)
		}
	})
	stillServes(t, c, mod)
}
