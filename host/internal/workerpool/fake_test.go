package workerpool

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rayhost/rayhost/host/internal/launch"
	"github.com/rayhost/rayhost/internal/ipc"
)

// errKilled is how a fake worker that was killed exits.
var errKilled = errors.New("fake worker: killed")

// fakeLauncher starts fake workers: goroutines on a net.Pipe that speak
// the ipc framing, send Ready (or first, if set) with their pid, then echo
// every frame back until their socket closes or they are killed.
type fakeLauncher struct {
	mu    sync.Mutex
	err   error         // Launch fails with it
	first ipc.Type      // the first frame, instead of Ready
	caps  string        // capabilities named in Ready after the pid
	mute  bool          // workers say Ready and then read nothing
	gate  chan struct{} // if set, workers say Ready once it is closed
	procs []*fakeProc
	pid   int
}

func (l *fakeLauncher) Launch(ctx context.Context, _ launch.WorkerOptions) (launch.Process, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return nil, l.err
	}
	l.pid++
	host, worker := net.Pipe()
	p := &fakeProc{pid: 100 + l.pid, host: host, worker: worker, done: make(chan struct{}), killed: make(chan struct{})}
	l.procs = append(l.procs, p)
	first := l.first
	if first == 0 {
		first = ipc.TypeReady
	}
	go p.run(l.gate, first, l.caps, l.mute)
	return p, nil
}

// open says Ready for every worker waiting at the gate, and for any to come.
func (l *fakeLauncher) open() {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.gate)
}

func (l *fakeLauncher) proc(pid int) *fakeProc {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.procs {
		if p.pid == pid {
			return p
		}
	}
	return nil
}

type fakeProc struct {
	pid          int
	host, worker net.Conn
	killed       chan struct{} // closed by Kill
	done         chan struct{} // closed once run has returned
	endOnce      sync.Once
	err          error // set by end
}

func (p *fakeProc) Conn() io.ReadWriteCloser { return p.host }
func (p *fakeProc) PID() int                 { return p.pid }
func (p *fakeProc) Wait() error              { <-p.done; return p.err }
func (p *fakeProc) Kill() error {
	p.end(errKilled)
	return nil
}

// crash ends the worker as if it died on its own.
func (p *fakeProc) crash(err error) { p.end(err) }

func (p *fakeProc) end(err error) {
	p.endOnce.Do(func() {
		p.err = err
		if errors.Is(err, errKilled) {
			close(p.killed)
		}
		p.host.Close()
		p.worker.Close()
	})
}

func (p *fakeProc) run(gate chan struct{}, first ipc.Type, caps string, mute bool) {
	defer close(p.done)
	defer p.end(nil) // its socket closed: it exits
	if gate != nil {
		select {
		case <-gate:
		case <-p.killed:
			return
		}
	}
	c := ipc.NewConn(p.worker)
	if c.Write(first, []byte(strconv.Itoa(p.pid)+caps)) != nil {
		return
	}
	if mute {
		<-p.killed
		return
	}
	for {
		t, payload, err := c.Read(nil)
		if err != nil || c.Write(t, payload) != nil {
			return
		}
	}
}

type frame struct {
	w       *Worker
	typ     ipc.Type
	payload string
}

type exit struct {
	w   *Worker
	err error
}

// recorder is a Handler that records what it is told. Its Ready makes the
// worker idle unless keep is set.
type recorder struct {
	pool     atomic.Pointer[Pool]
	keep     bool
	frameErr string // Frame fails for this payload
	ready    chan *Worker
	failed   chan error
	frames   chan frame
	exited   chan exit
}

func newRecorder() *recorder {
	const n = 1 << 12
	return &recorder{ready: make(chan *Worker, n), failed: make(chan error, n),
		frames: make(chan frame, n), exited: make(chan exit, n)}
}

func (r *recorder) Ready(w *Worker, hello []byte) {
	w.Value = string(hello)
	if !r.keep {
		r.pool.Load().Idle(w)
	}
	r.ready <- w
}

func (r *recorder) StartFailed(err error) { r.failed <- err }

func (r *recorder) Frame(w *Worker, typ ipc.Type, payload []byte) error {
	if r.frameErr != "" && string(payload) == r.frameErr {
		return errors.New("a bad frame")
	}
	r.frames <- frame{w, typ, string(payload)}
	return nil
}

func (r *recorder) Exited(w *Worker, err error) { r.exited <- exit{w, err} }

// newPool returns a pool of fake workers whose Handler is a recorder; cfg's
// Launcher and Handler are filled in. It is closed at the end of the test.
func newPool(t testing.TB, cfg Config, r *recorder, l *fakeLauncher) *Pool {
	t.Helper()
	cfg.Launcher, cfg.Handler = l, r
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.pool.Store(p)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return p
}

// recv returns the next value of ch; a hang guard fails the test.
func recv[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Minute):
		t.Fatal("timed out waiting for the pool")
		panic("unreachable")
	}
}

// none checks that ch has nothing (after the events that would have sent
// it have happened).
func none[T any](t testing.TB, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected %s: %v", what, v)
	default:
	}
}
