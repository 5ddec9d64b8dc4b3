package testutil

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as the programs run inside the namespaces: with
// netnsHelperEnv set, TestNetnsHelper runs the echo server or client it
// names instead of a test.
const (
	netnsHelperEnv = "RAYHOST_TESTUTIL_NETNS_HELPER" // "echo ADDR" or "client ADDR TIMEOUT"
	echoPort       = "7007"
	// cutTimeout is how long a check that must fail (across a cut) waits
	// before it counts as failed: a loaded machine only makes it fail
	// more surely.
	cutTimeout = 500 * time.Millisecond
	// okTimeout bounds a check that must succeed: a hang guard, generous
	// so that a loaded machine is slow but does not fail.
	okTimeout = 30 * time.Second
)

func TestNetnsHelper(t *testing.T) {
	mode, addr, ok := strings.Cut(os.Getenv(netnsHelperEnv), " ")
	if !ok {
		return // a plain test run
	}
	switch mode {
	case "echo":
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("ready")
		serveEcho(l) // until killed
	case "client":
		addr, ts, _ := strings.Cut(addr, " ")
		timeout, err := time.ParseDuration(ts)
		if err != nil {
			fmt.Println(err)
			os.Exit(2)
		}
		if err := echoOnce(addr, "hello", timeout); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("ok")
	default:
		fmt.Println("unknown mode", mode)
		os.Exit(2)
	}
	os.Exit(0)
}

func serveEcho(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
	}
}

// echoOnce connects to the echo server at addr and checks that it echoes
// msg, the dial and the round trip each within timeout.
func echoOnce(addr, msg string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	return roundTrip(c, msg, timeout)
}

func roundTrip(c net.Conn, msg string, timeout time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	return readEcho(c, msg)
}

func readEcho(c net.Conn, msg string) error {
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

// helper returns the test binary, run as helper mode inside n.
func helper(ctx context.Context, n *Netns, mode, addr string) *exec.Cmd {
	cmd := n.Command(ctx, os.Args[0], "-test.run=^TestNetnsHelper$")
	// Under -race, a process sleeps a second before exiting unless told not to.
	cmd.Env = append(os.Environ(), netnsHelperEnv+"="+mode+" "+addr, "GORACE=atexit_sleep_ms=0")
	return cmd
}

// startEcho starts an echo server inside n on n.IP:echoPort and returns
// its address once it listens.
func startEcho(t *testing.T, n *Netns) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := net.JoinHostPort(n.IP, echoPort)
	cmd := helper(ctx, n, "echo", addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("echo server in %s: %q, %v", n.Name, line, err)
	}
	return addr
}

// clientIn runs an echo client inside n against addr and returns nil if
// the echo came back within timeout.
func clientIn(n *Netns, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*timeout+HangGuard)
	defer cancel()
	out, err := helper(ctx, n, "client", addr+" "+timeout.String()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

func TestNetnsPartition(t *testing.T) {
	b := NewBridge(t)
	a := b.Namespace(t, "a")
	nb := b.Namespace(t, "b")
	t.Logf("bridge %s, %s at %s, %s at %s", b.IP, a.Name, a.IP, nb.Name, nb.IP)
	addrA := startEcho(t, a)

	// The test process also serves echo on the bridge's address, for
	// clients inside the namespaces.
	l, err := net.Listen("tcp", net.JoinHostPort(b.IP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go serveEcho(l)
	addrRoot := l.Addr().String()

	// Connected: the root namespace reaches A, B reaches A, A reaches the
	// root namespace.
	if err := echoOnce(addrA, "hello", okTimeout); err != nil {
		t.Fatalf("root -> A: %v", err)
	}
	if err := clientIn(nb, addrA, okTimeout); err != nil {
		t.Fatalf("B -> A: %v", err)
	}
	if err := clientIn(a, addrRoot, okTimeout); err != nil {
		t.Fatalf("A -> root: %v", err)
	}
	held, err := net.DialTimeout("tcp", addrA, okTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := roundTrip(held, "before", okTimeout); err != nil {
		t.Fatalf("established connection: %v", err)
	}

	// Cut: the established connection stalls (no reset), new connections
	// in both directions fail.
	if err := a.Cut(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = roundTrip(held, "during", cutTimeout)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("established connection after Cut: %v, want a timeout", err)
	}
	if err := echoOnce(addrA, "hello", cutTimeout); err == nil {
		t.Fatal("root -> A works after Cut")
	} else {
		t.Logf("root -> A after Cut: %v", err)
	}
	if err := clientIn(nb, addrA, cutTimeout); err == nil {
		t.Fatal("B -> A works after Cut")
	} else {
		t.Logf("B -> A after Cut: %v", err)
	}
	if err := clientIn(a, addrRoot, cutTimeout); err == nil {
		t.Fatal("A -> root works after Cut")
	} else {
		t.Logf("A -> root after Cut: %v", err)
	}
	// B is still connected to the rest.
	if err := clientIn(nb, addrRoot, okTimeout); err != nil {
		t.Fatalf("B -> root after cutting A: %v", err)
	}

	// Heal: the stalled connection delivers what was written during the
	// cut (TCP retransmits, backing off, so allow a few seconds), and new
	// connections work again.
	if err := a.Heal(); err != nil {
		t.Fatal(err)
	}
	t.Logf("healed after %v", time.Since(start).Round(time.Millisecond))
	if err := held.SetDeadline(time.Now().Add(HangGuard)); err != nil {
		t.Fatal(err)
	}
	if err := readEcho(held, "during"); err != nil {
		t.Fatalf("established connection after Heal: %v", err)
	}
	t.Logf("established connection resumed %v after Cut", time.Since(start).Round(time.Millisecond))
	if err := roundTrip(held, "after", okTimeout); err != nil {
		t.Fatalf("established connection after Heal: %v", err)
	}
	if err := echoOnce(addrA, "hello", okTimeout); err != nil {
		t.Fatalf("root -> A after Heal: %v", err)
	}
	if err := clientIn(nb, addrA, okTimeout); err != nil {
		t.Fatalf("B -> A after Heal: %v", err)
	}
	if err := clientIn(a, addrRoot, okTimeout); err != nil {
		t.Fatalf("A -> root after Heal: %v", err)
	}
}

func TestNetnsCleanup(t *testing.T) {
	var b *Bridge
	var spaces []*Netns
	t.Run("use", func(t *testing.T) {
		b = NewBridge(t)
		spaces = append(spaces, b.Namespace(t, "a"), b.Namespace(t, "b"))
		if err := spaces[0].Cut(); err != nil { // a cut namespace too
			t.Fatal(err)
		}
	})
	if b == nil || len(spaces) < 2 {
		t.Skip("no network namespaces")
	}
	out, err := exec.Command(b.ip, "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	for _, n := range spaces {
		if strings.Contains(string(out), n.Name) {
			t.Errorf("namespace %s left after the test:\n%s", n.Name, out)
		}
	}
	for _, link := range []string{b.name, spaces[0].veth, spaces[1].veth} {
		if _, err := net.InterfaceByName(link); err == nil {
			t.Errorf("link %s left after the test", link)
		}
	}
}
