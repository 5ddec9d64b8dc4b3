package testutil

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/gossip"
	"github.com/rayhost/rayhost/host"
)

// StartCluster starts n in-process hosts that form a cluster over real
// Serf gossip on loopback with fast timings (the first starts it, the
// others join it), changed by mutate (may be nil), and waits until every
// host sees all n alive. They are closed when the test ends.
func StartCluster(t testing.TB, n int, mutate func(i int, cfg *host.Config)) []*host.Host {
	t.Helper()
	hosts := make([]*host.Host, 0, n)
	seed := ""
	for i := range n {
		cfg := HostConfig(t)
		cfg.ID = fmt.Sprintf("h%d-%s", i, cfg.ID)
		cc := host.DefaultClusterConfig()
		cc.Gossip.BindAddr = "127.0.0.1:0"
		cc.Gossip.Timings = gossip.FastTimings()
		cc.LoadInterval = 50 * time.Millisecond
		cc.JoinTimeout = HangGuard
		if seed != "" {
			cc.Seeds = []string{seed}
		}
		cfg.Cluster = cc
		if mutate != nil {
			mutate(i, &cfg)
		}
		h, err := host.New(cfg)
		if err != nil {
			t.Fatalf("starting host %d: %v", i, err)
		}
		t.Cleanup(func() { _ = h.Close() })
		if seed == "" {
			seed = h.GossipAddr()
		}
		hosts = append(hosts, h)
	}
	for _, h := range hosts {
		WaitMembers(t, client.New(h.Addr()), n)
	}
	return hosts
}

// WaitMembers waits (up to HangGuard) until the host c talks to sees want
// alive members, itself included.
func WaitMembers(t testing.TB, c *client.Client, want int) []client.Member {
	t.Helper()
	deadline := time.Now().Add(HangGuard)
	for {
		ms, err := c.Members(context.Background())
		alive := 0
		for _, m := range ms {
			if m.State == "alive" {
				alive++
			}
		}
		if err == nil && alive == want {
			return ms
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %d alive members: have %d (%v, err %v)", want, alive, ms, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ProcHost is a host running as a separate `rayhost` process.
type ProcHost struct {
	ID, Addr, GossipAddr, DataDir string
	IP                            string
	Client                        *client.Client

	t    testing.TB
	cmd  *exec.Cmd
	args []string
	wrap func(ctx context.Context, name string, args ...string) *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	log  []string
}

// ProcOptions configure StartProcCluster.
type ProcOptions struct {
	// IPs are the addresses the hosts listen on (one each); default
	// 127.0.0.10, .11, …
	IPs []string
	// Wrap, if set, builds each host's command (to run it inside a network
	// namespace, say); i is the host's index.
	Wrap func(i int) func(ctx context.Context, name string, args ...string) *exec.Cmd
	// Args are extra flags for every host.
	Args []string
}

// StartProcCluster starts n `rayhost` processes: the first with `start`,
// the others with `join`, each on its own IP with fast gossip timings, and
// waits until every host sees all n alive. They are killed when the test
// ends.
func StartProcCluster(t testing.TB, n int, o ProcOptions) []*ProcHost {
	t.Helper()
	bin := RayhostBinary(t)
	var hosts []*ProcHost
	seed := ""
	for i := range n {
		ip := fmt.Sprintf("127.0.0.%d", 10+i)
		if i < len(o.IPs) {
			ip = o.IPs[i]
		}
		p := &ProcHost{t: t, IP: ip, ID: fmt.Sprintf("host-%c", 'a'+i), DataDir: filepath.Join(t.TempDir(), "data")}
		args := []string{"--id", p.ID, "--listen", ip + ":0", "--gossip", ip + ":0", "--gossip-timings", "fast",
			"--data-dir", p.DataDir, "--num-cpus", "2", "--workers", "2", "--log-level", "info"}
		args = append(args, o.Args...)
		if seed == "" {
			args = append([]string{"start"}, args...)
		} else {
			// The seed before the flags, as people type it.
			args = append([]string{"join", seed}, args...)
		}
		p.args = append([]string{bin}, args...)
		if o.Wrap != nil {
			p.wrap = o.Wrap(i)
		}
		p.start()
		if seed == "" {
			seed = p.GossipAddr
		}
		hosts = append(hosts, p)
	}
	for _, p := range hosts {
		WaitMembers(t, p.Client, n)
	}
	return hosts
}

// start launches the process and reads its addresses from what it prints.
func (p *ProcHost) start() {
	t := p.t
	t.Helper()
	cmd := exec.Command(p.args[0], p.args[1:]...)
	if p.wrap != nil {
		cmd = p.wrap(context.Background(), p.args[0], p.args[1:]...)
	}
	cmd.Env = append(os.Environ(), "RAYHOST_TOKEN=", "RAYHOST_ENCRYPT=")
	setProcessGroup(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", p.ID, err)
	}
	p.cmd = cmd
	p.done = make(chan struct{})
	t.Cleanup(func() { p.Kill() })
	go p.collect(stderr)
	addrs := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		var api string
		for sc.Scan() {
			line := sc.Text()
			p.keep(line)
			if f := strings.Fields(line); len(f) > 5 && f[0] == "rayhost" && f[1] == "host" {
				api = strings.TrimPrefix(strings.TrimPrefix(f[5], "http://"), "https://")
			}
			if strings.HasPrefix(line, "gossip on ") {
				g := strings.TrimSuffix(strings.Fields(line)[2], ":")
				addrs <- [2]string{api, g}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { _ = cmd.Wait(); close(p.done) }()
	select {
	case a := <-addrs:
		p.Addr, p.GossipAddr = a[0], a[1]
	case <-p.done:
		t.Fatalf("host %s exited before it listened:\n%s", p.ID, p.Log())
	case <-time.After(HangGuard):
		t.Fatalf("host %s did not start:\n%s", p.ID, p.Log())
	}
	p.Client = client.New(p.Addr)
}

func (p *ProcHost) collect(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		p.keep(sc.Text())
	}
}

func (p *ProcHost) keep(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.log) < 5000 {
		p.log = append(p.log, line)
	}
}

// Log is what the host printed so far.
func (p *ProcHost) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.log, "\n")
}

// Pid is the host process's pid.
func (p *ProcHost) Pid() int { return p.cmd.Process.Pid }

// Kill kills the host and its workers with SIGKILL, as a crash would.
func (p *ProcHost) Kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	killProcessGroup(p.cmd)
	<-p.done
}

// Stop stops the host with SIGTERM (it leaves the cluster gracefully) and
// waits for it to exit.
func (p *ProcHost) Stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(HangGuard):
		p.Kill()
		return fmt.Errorf("host %s did not stop within %v", p.ID, HangGuard)
	}
	return nil
}

// Restart starts the host again with the same flags and data directory
// (after Kill or Stop); it rejoins on its own.
func (p *ProcHost) Restart() {
	p.t.Helper()
	p.start()
}

// RestartInPlace is Restart on the API and gossip addresses the host had,
// as a host with fixed --listen and --gossip ports comes back: ObjectRefs
// that name it as their owner reach it again, and hosts that joined
// through it still find it. Later restarts keep those addresses.
func (p *ProcHost) RestartInPlace() {
	p.t.Helper()
	for i := range p.args[:len(p.args)-1] {
		switch p.args[i] {
		case "--listen":
			p.args[i+1] = p.Addr
		case "--gossip":
			p.args[i+1] = p.GossipAddr
		}
	}
	p.start()
}

// MadeBytes is what the test guest's make_bytes(n) returns.
func MadeBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}
