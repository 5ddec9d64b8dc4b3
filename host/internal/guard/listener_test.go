package guard_test

import (
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rayhost/rayhost/host/internal/guard"
)

// TestCapListener: past the cap a new connection is closed at once (and
// counted), while those in get answers; once one closes, a new one gets in.
func TestCapListener(t *testing.T) {
	const limit = 2
	refusals := make(chan int64, 10)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	capped := guard.CapListener(ln, limit, func(n int64) { refusals <- n })
	t.Cleanup(func() { capped.Close() })
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := capped.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	var in []net.Conn
	for range limit {
		dial()
		select {
		case c := <-accepted:
			in = append(in, c)
		case <-time.After(hangGuard):
			t.Fatal("a connection within the cap was not accepted")
		}
	}
	over := dial()
	_ = over.SetReadDeadline(time.Now().Add(hangGuard)) // a hang guard
	if _, err := over.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("a connection past the cap: %v, want it closed", err)
	}
	select {
	case n := <-refusals:
		if n != 1 {
			t.Fatalf("onFull saw %d refused, want 1", n)
		}
	case <-time.After(hangGuard):
		t.Fatal("onFull was not called")
	}
	select {
	case <-accepted:
		t.Fatal("a connection past the cap was handed to the server")
	default:
	}
	in[0].Close()
	in[0].Close() // twice frees one slot, not two
	dial()
	select {
	case c := <-accepted:
		t.Cleanup(func() { c.Close() })
	case <-time.After(hangGuard):
		t.Fatal("no connection accepted after one closed")
	}
	over2 := dial()
	_ = over2.SetReadDeadline(time.Now().Add(hangGuard))
	if _, err := over2.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("closing a connection twice freed two slots: %v", err)
	}
}

// isReset: the connection was reset (closed with data unread), not timed
// out.
func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

func TestExposed(t *testing.T) {
	for _, tt := range []struct {
		addr net.Addr
		want bool
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, false},
		{&net.TCPAddr{IP: net.IPv6loopback}, false},
		{&net.TCPAddr{IP: net.IPv4zero}, true},
		{&net.TCPAddr{IP: net.IPv6unspecified}, true},
		{&net.TCPAddr{IP: net.IPv4(10, 1, 2, 3)}, true},
		{&net.UnixAddr{Name: "/tmp/s", Net: "unix"}, true},
	} {
		if got := guard.Exposed(tt.addr); got != tt.want {
			t.Errorf("Exposed(%v) = %v", tt.addr, got)
		}
	}
}

func TestClientIP(t *testing.T) {
	for addr, want := range map[string]string{"10.0.0.1:5555": "10.0.0.1", "[::1]:80": "::1", "garbage": "garbage"} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = addr
		if got := guard.ClientIP(r); got != want {
			t.Errorf("ClientIP(%q) = %q", addr, got)
		}
	}
}
