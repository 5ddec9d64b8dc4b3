package guard

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// CapListener caps the open connections of ln at limit: one more is closed
// as soon as it is accepted, so clients see it refused at once instead of
// hanging in the kernel's backlog (what golang.org/x/net/netutil's
// LimitListener does). onFull, if set, is called with the count of refused
// connections at the 1st, 2nd, 4th, 8th... refusal. A connection's slot is
// free again once it is closed.
func CapListener(ln net.Listener, limit int, onFull func(refused int64)) net.Listener {
	return &capListener{Listener: ln, slots: make(chan struct{}, limit), onFull: onFull}
}

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

// Exposed reports whether addr listens beyond loopback.
func Exposed(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return !ok || !tcp.IP.IsLoopback()
}

// ClientIP is the IP address a request came from.
func ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
