package testutil

// Network partitions between processes on one Linux machine: a Bridge in the
// test's network namespace joins private network namespaces (one per process
// under test) into one L2 network, and Netns.Cut / Netns.Heal take one
// namespace off that network and put it back.
//
// Everything is done with the `ip` tool from iproute2; it needs root (or
// CAP_NET_ADMIN and CAP_SYS_ADMIN) and no packet filter (iptables/nft are
// not used).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Bridge is a Linux bridge in the test process's network namespace that
// joins test namespaces (see Bridge.Namespace) into one L2 network on a
// 10.213.X.0/24 subnet. The bridge itself has the address .1 (Bridge.IP),
// so the test process can reach every namespace and every namespace can
// reach servers the test process runs on Bridge.IP.
//
// The methods of Bridge and Netns are safe for concurrent use.
type Bridge struct {
	// IP is the bridge's address, e.g. "10.213.7.1".
	IP string

	ip     string // path of the ip tool
	name   string // link name of the bridge, e.g. "rh1234b0", and prefix of all other names
	subnet int    // X in 10.213.X.0/24

	mu     sync.Mutex
	next   int // host part of the next namespace's address
	spaces []*Netns
	closed bool
}

// Netns is a network namespace on a Bridge, with lo up and one interface,
// eth0, plugged into the bridge. It has no default route: it reaches only
// the bridge's subnet.
type Netns struct {
	// Name is the namespace's name for `ip netns`, e.g. "rh1234b0-a".
	Name string
	// IP is the namespace's address on the bridge, e.g. "10.213.7.10".
	IP string

	b    *Bridge
	veth string // bridge-side end of the namespace's veth pair

	mu      sync.Mutex
	deleted bool
}

var (
	bridgeMu      sync.Mutex
	bridgeSeq     int              // bridges made by this process
	bridgeSubnets = map[int]bool{} // subnets in use by this process's bridges
)

// findIP returns the path of the ip tool, which often is not on a
// non-login PATH.
func findIP() (string, error) {
	if p, err := exec.LookPath("ip"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", errors.New("the ip tool (iproute2) is not installed")
}

// NewBridge creates a Bridge and removes it, with all its namespaces, when
// the test ends. It skips the test ("network namespaces unavailable: ...")
// when namespaces cannot be used: not Linux, not root, no ip tool, or
// creating a bridge or namespace fails. Like t.Skip, it must be called from
// the test's goroutine.
func NewBridge(t testing.TB) *Bridge {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		t.Skipf("network namespaces unavailable: "+format, args...)
	}
	if runtime.GOOS != "linux" {
		skip("not on Linux")
	}
	if os.Geteuid() != 0 {
		skip("not root")
	}
	ipPath, err := findIP()
	if err != nil {
		skip("%v", err)
	}

	b := &Bridge{ip: ipPath, next: 10}
	t.Cleanup(func() {
		if err := b.close(); err != nil {
			t.Errorf("removing the test network: %v", err)
		}
	})
	// Every name derives from the bridge's, so owning the bridge's name
	// means owning all of them. Another test process whose pid is equal
	// modulo 10000 may have taken it: then try the next one.
	for {
		bridgeMu.Lock()
		seq := bridgeSeq
		bridgeSeq++
		bridgeMu.Unlock()
		name := fmt.Sprintf("rh%db%d", os.Getpid()%10000, seq)
		err := b.run("link", "add", "name", name, "type", "bridge")
		if err == nil {
			b.name = name
			break
		}
		// A bridge needs CAP_NET_ADMIN.
		if !strings.Contains(err.Error(), "File exists") || seq > 100 {
			skip("creating a bridge: %v", err)
		}
	}

	// A named namespace also needs to mount on /run/netns.
	probe := b.name + "-probe"
	if err := b.run("netns", "add", probe); err != nil {
		skip("creating a namespace: %v", err)
	}
	if err := b.run("netns", "del", probe); err != nil {
		t.Fatal(err)
	}

	bridgeMu.Lock()
	subnet, err := freeSubnet(os.Getpid())
	if err == nil {
		bridgeSubnets[subnet] = true
		b.subnet = subnet
		b.IP = fmt.Sprintf("10.213.%d.1", subnet)
		err = b.run("addr", "add", b.IP+"/24", "dev", b.name)
	}
	bridgeMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.run("link", "set", "dev", b.name, "up"); err != nil {
		t.Fatal(err)
	}
	return b
}

// freeSubnet picks X for 10.213.X.0/24, starting from one derived from the
// pid so that concurrent test processes pick different ones, and skipping
// those used by this process's bridges or by an address in this namespace
// (another test process's bridge). Call with bridgeMu held.
func freeSubnet(pid int) (int, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return 0, err
	}
	used := func(x int) bool {
		if bridgeSubnets[x] {
			return true
		}
		_, sub, _ := net.ParseCIDR(fmt.Sprintf("10.213.%d.0/24", x))
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && (sub.Contains(n.IP) || n.Contains(sub.IP)) {
				return true
			}
		}
		return false
	}
	start := pid * 7
	for i := range 255 {
		if x := (start+i)%255 + 1; !used(x) {
			return x, nil
		}
	}
	return 0, errors.New("no free subnet in 10.213.0.0/16 for a test bridge")
}

// run runs the ip tool with args.
func (b *Bridge) run(args ...string) error {
	cmd := exec.Command(b.ip, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// Namespace creates a network namespace named b's link name + "-" + name (so
// name need only be unique on b) with lo up and an interface eth0 with
// address .N on b's subnet (N = 10, 11, ...). It is removed when t ends or
// when b is removed, whichever comes first. Processes still running inside
// the namespace then keep running but lose the network; stop them before
// (cleanups registered later run earlier). It calls t.Fatal on errors.
func (b *Bridge) Namespace(t testing.TB, name string) *Netns {
	t.Helper()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		t.Fatal("testutil: Namespace on a removed Bridge")
	}
	for _, o := range b.spaces {
		if o.Name == b.name+"-"+name {
			b.mu.Unlock()
			t.Fatalf("testutil: two namespaces named %q on one Bridge", name)
		}
	}
	host := b.next
	b.next++
	n := &Netns{
		Name: b.name + "-" + name,
		IP:   fmt.Sprintf("10.213.%d.%d", b.subnet, host),
		b:    b,
		veth: fmt.Sprintf("%sv%d", b.name, host),
	}
	b.spaces = append(b.spaces, n)
	b.mu.Unlock()
	if host > 254 {
		t.Fatal("testutil: too many namespaces on one Bridge")
	}
	if len(n.veth) > 15 {
		t.Fatalf("testutil: interface name %q too long", n.veth)
	}
	t.Cleanup(func() {
		if err := n.delete(); err != nil {
			t.Errorf("removing namespace %s: %v", n.Name, err)
		}
	})

	steps := [][]string{
		{"netns", "add", n.Name},
		// Create the inner end directly in the namespace, so that its
		// name cannot collide with any link in this namespace.
		{"link", "add", "name", n.veth, "type", "veth", "peer", "name", "eth0", "netns", n.Name},
		{"link", "set", "dev", n.veth, "master", b.name, "up"},
		{"-n", n.Name, "link", "set", "dev", "lo", "up"},
		{"-n", n.Name, "addr", "add", n.IP + "/24", "dev", "eth0"},
		{"-n", n.Name, "link", "set", "dev", "eth0", "up"},
	}
	for _, s := range steps {
		if err := b.run(s...); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.waitForwarding(); err != nil {
		t.Fatal(err)
	}
	return n
}

// Command returns a command that runs the program name with args inside the
// namespace (through `ip netns exec`, which execs the program, so the
// command's process is the program itself). As with exec.CommandContext,
// the process is killed when ctx is done; the caller starts it.
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, n.b.ip, append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Cut partitions the namespace from the network: it can no longer reach the
// other namespaces or the bridge's address, nor be reached by them.
//
// It sets the bridge side of the namespace's veth pair down. The bridge then
// stops forwarding to and from that port, and what the namespace sends is
// dropped by the veth, whose peer is down. Nothing answers for the other
// side, so no RST or ICMP error is generated anywhere: established TCP
// connections stall and retransmit (and resume after Heal), new ones time
// out, exactly as when a network cable is pulled. Once ARP gives up (about
// 3 s), a new connection fails sooner with "no route to host", again as on
// a real L2 network; established connections take that as a soft error and
// stay open. The processes inside see only the loss of carrier on eth0,
// which keeps its address and routes.
func (n *Netns) Cut() error {
	return n.b.run("link", "set", "dev", n.veth, "down")
}

// Heal undoes Cut: it sets the veth's bridge side up again and waits until
// the bridge forwards through it. New connections work at once; a stalled
// connection resumes at its next retransmission, which TCP's exponential
// backoff may put several seconds away after a long cut (about 13 s after
// a 6 s cut).
func (n *Netns) Heal() error {
	if err := n.b.run("link", "set", "dev", n.veth, "up"); err != nil {
		return err
	}
	return n.waitForwarding()
}

// waitForwarding waits until the veth is up with carrier and the bridge
// forwards through it.
func (n *Netns) waitForwarding() error {
	deadline := time.Now().Add(HangGuard)
	for {
		state, err := n.portState()
		if err == nil && state == "UP/forwarding" {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("operstate/port state is %s", state)
			}
			return fmt.Errorf("bridge port %s not forwarding: %v", n.veth, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// portState returns the veth's "operstate/bridge port state".
func (n *Netns) portState() (string, error) {
	out, err := exec.Command(n.b.ip, "-d", "-j", "link", "show", "dev", n.veth).Output()
	if err != nil {
		return "", err
	}
	var links []struct {
		Operstate string `json:"operstate"`
		Linkinfo  struct {
			SlaveData struct {
				State string `json:"state"`
			} `json:"info_slave_data"`
		} `json:"linkinfo"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		return "", err
	}
	if len(links) != 1 {
		return "", fmt.Errorf("ip link show %s: %d links", n.veth, len(links))
	}
	return links[0].Operstate + "/" + links[0].Linkinfo.SlaveData.State, nil
}

// delete removes the veth pair and the namespace; it may be called again.
func (n *Netns) delete() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.deleted {
		return nil
	}
	n.deleted = true
	// Delete the veth first: deleting the namespace's name does not
	// destroy the namespace (and its end of the pair) while a process
	// still runs inside it.
	var errs []error
	if err := n.b.run("link", "del", "dev", n.veth); err != nil && !isNotFound(err) {
		errs = append(errs, err)
	}
	if err := n.b.run("netns", "del", n.Name); err != nil && !isNotFound(err) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// close removes the bridge's namespaces and the bridge.
func (b *Bridge) close() error {
	b.mu.Lock()
	b.closed = true
	spaces := b.spaces
	b.mu.Unlock()
	var errs []error
	for _, n := range spaces {
		errs = append(errs, n.delete())
	}
	if b.name == "" {
		return errors.Join(errs...) // not created
	}
	if err := b.run("link", "del", "dev", b.name); err != nil && !isNotFound(err) {
		errs = append(errs, err)
	}
	bridgeMu.Lock()
	delete(bridgeSubnets, b.subnet)
	bridgeMu.Unlock()
	return errors.Join(errs...)
}

// isNotFound reports whether err from run says the link or namespace does
// not exist (e.g. a failed setup never created it).
func isNotFound(err error) bool {
	s := err.Error()
	return strings.Contains(s, "Cannot find device") || strings.Contains(s, "No such file") ||
		strings.Contains(s, "does not exist")
}
