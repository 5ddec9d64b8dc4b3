package host_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/testutil"
)

// TestReviewUnauthStalledBody: a stranger (no token) sends a call's headers
// and announces a body it never sends. The guard refuses it without reading
// the body, but net/http then tries to drain the body before answering, with
// no deadline: the connection (and a slot of MaxConnections: enough of them
// lock every client out) was held for good, unanswered. The host must answer
// (401) and close, and a client with the token still gets in.
func TestReviewUnauthStalledBody(t *testing.T) {
	const slots = 4
	h := testutil.StartHost(t, func(cfg *host.Config) {
		cfg.Token = "s3cret"
		cfg.BodyReadTimeout = 5 * time.Second
	})
	c := client.New(h.Addr(), client.WithToken("s3cret"))
	const guard = 30 * time.Second // a hang guard: the body timeout is 5 s
	var conns []net.Conn
	for range slots {
		conn, err := net.Dial("tcp", h.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		req := "POST " + rayhostv1connect.TaskServiceHealthProcedure + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/proto\r\n" +
			"Content-Length: 1000\r\n\r\n0123456789"
		if _, err := conn.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}
	for i, conn := range conns {
		_ = conn.SetReadDeadline(time.Now().Add(guard))
		r := bufio.NewReader(conn)
		line, err := r.ReadString('\n')
		if err != nil && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("stranger %d: the host neither answered nor closed a refused call whose body stalls: %v", i, err)
		}
		if strings.Contains(line, " 200 ") {
			t.Fatalf("stranger %d got %q", i, line)
		}
		// The connection must end too, not wait for the rest of the body.
		if _, err := io.Copy(io.Discard, r); err != nil && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("stranger %d: connection held after the refusal: %v", i, err)
		}
		t.Logf("stranger %d: %q", i, strings.TrimSpace(line))
	}
	// A client with the token still gets in. (No module is registered: a
	// 5 MB upload races the body deadline on a loaded machine, and the
	// deadline is not what this test is about.)
	if _, err := c.Members(ctxFor(t, guard)); err != nil {
		t.Fatalf("a client with the token after the strangers: %v", err)
	}
}
