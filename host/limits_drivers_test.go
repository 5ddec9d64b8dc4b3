// This file holds the tests of the caps on drivers, host-wide
// (MaxDrivers) and per client (MaxDriversPerClient).

package host_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/testutil"
)

// Issue 13 item 10: drivers past MaxDrivers wait for a slot instead of
// taking the workers tasks need; a normal task runs while they wait, and a
// waiting driver starts when a running one ends.
func TestDriverCap(t *testing.T) {
	h := testutil.StartHost(t, func(c *host.Config) {
		c.NumCPUs, c.Workers, c.MaxWorkers = 2, 2, 4 // MaxDrivers: 4 - 2 = 2
		c.MaxDriversPerClient = 2                    // this test is one client
	})
	c := client.New(h.Addr())
	mod := testutil.Register(t, c, limitsPkg)

	const drivers, maxDrivers = 5, 2
	var running, peak atomic.Int32
	started := make(chan int, drivers)
	cancels := make([]context.CancelFunc, drivers)
	ended := make([]chan struct{}, drivers)
	var wg sync.WaitGroup
	for i := range drivers {
		ctx, cancel := context.WithCancel(ctxFor(t, 3*time.Minute))
		cancels[i], ended[i] = cancel, make(chan struct{})
		wg.Go(func() {
			defer close(ended[i])
			var once sync.Once
			didStart := false
			err := c.Run(ctx, mod, func(l client.LogLine) {
				if strings.Contains(string(l.Data), "driver started") {
					once.Do(func() {
						didStart = true
						n := running.Add(1)
						for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
						}
						started <- i
					})
				}
			})
			if didStart {
				running.Add(-1)
			}
			if ctx.Err() == nil {
				t.Errorf("driver %d ended before it was cancelled: %v", i, err)
			}
		})
	}
	defer func() {
		for _, cancel := range cancels {
			cancel()
		}
		wg.Wait()
	}()
	first := <-started
	<-started
	// Five drivers asked; two run, three wait: the tasks still get workers.
	none := int32(0)
	ctx := ctxFor(t, 2*time.Minute)
	var calls []client.Call
	for range 4 {
		calls = append(calls, client.Call{Module: mod, Function: "alloc_mib", Args: []any{1}, MaxRetries: &none})
	}
	refs, err := c.SubmitBatch(ctx, calls)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		var n int
		if err := c.Get(ctx, r[0], &n); err != nil || n != 1 {
			t.Fatalf("a task while drivers wait: %d, %v", n, err)
		}
	}
	if p := peak.Load(); p > maxDrivers {
		t.Fatalf("%d drivers ran at once, MaxDrivers is %d", p, maxDrivers)
	}
	// Ending a driver lets a waiting one start; no more than two ever run.
	cancels[first]()
	<-ended[first]
	<-started
	if p := peak.Load(); p > maxDrivers {
		t.Fatalf("%d drivers ran at once, MaxDrivers is %d", p, maxDrivers)
	}
}

// startDriver starts a driver of mod through c and returns a channel that
// gets a value when it prints that it started, and its cancel function.
func startDriver(t *testing.T, c *client.Client, mod string, wg *sync.WaitGroup) (started chan struct{}, cancel context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctxFor(t, 3*time.Minute))
	started = make(chan struct{}, 1)
	wg.Go(func() {
		var once sync.Once
		_ = c.Run(ctx, mod, func(l client.LogLine) {
			if strings.Contains(string(l.Data), "driver started") {
				once.Do(func() { started <- struct{}{} })
			}
		})
	})
	return started, cancel
}

// Issue 13 item 10, per client: one client (an IP address) holds at most
// MaxDriversPerClient of the driver slots; another client's driver starts
// while the first one's third driver waits.
func TestDriverCapPerClient(t *testing.T) {
	h := testutil.StartHost(t, func(c *host.Config) {
		c.NumCPUs, c.Workers, c.MaxWorkers = 2, 2, 5 // MaxDrivers: 3
		c.MaxDriversPerClient = 2
	})
	a := client.New(h.Addr())
	mod := testutil.Register(t, a, limitsPkg)
	// Client b connects from another loopback address.
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	b := client.New(h.Addr(), client.WithHTTPClient(&http.Client{Transport: &http.Transport{DialContext: d.DialContext}}))

	var wg sync.WaitGroup
	var cancels []context.CancelFunc
	defer func() {
		for _, cancel := range cancels {
			cancel()
		}
		wg.Wait()
	}()
	var aStarted []chan struct{}
	for range 3 {
		s, cancel := startDriver(t, a, mod, &wg)
		aStarted, cancels = append(aStarted, s), append(cancels, cancel)
	}
	// Two of a's drivers start (which two is up to the host).
	ctx := ctxFor(t, 2*time.Minute)
	got := 0
	waitingA := -1
	for got < 2 {
		select {
		case <-aStarted[0]:
			aStarted[0] = nil
		case <-aStarted[1]:
			aStarted[1] = nil
		case <-aStarted[2]:
			aStarted[2] = nil
		case <-ctx.Done():
			t.Fatal("a's first two drivers did not start")
		}
		got++
	}
	for i, s := range aStarted {
		if s != nil {
			waitingA = i
		}
	}
	// b's driver takes the third slot, ahead of a's third driver.
	bStarted, cancel := startDriver(t, b, mod, &wg)
	cancels = append(cancels, cancel)
	select {
	case <-bStarted:
	case <-aStarted[waitingA]:
		t.Fatal("a's third driver started: a client took more than MaxDriversPerClient slots")
	case <-ctx.Done():
		t.Fatal("b's driver did not start while a held its share")
	}
	var n int
	mustCall(t, a, mod, "alloc_mib", &n, 1)
}
