package workerpool

import (
	"context"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/rayhost/rayhost/host/internal/launch"
	"github.com/rayhost/rayhost/internal/clock"
	"github.com/rayhost/rayhost/internal/ipc"
)

// Defaults of a Config's durations.
const (
	// DefaultIdleTTL is how long a worker beyond the warm pool (and its
	// spare) may stay idle.
	DefaultIdleTTL = time.Minute
	// DefaultStartTimeout bounds a worker's launch and Ready.
	DefaultStartTimeout = 30 * time.Second
	// DefaultReapEvery is how often the background reaper runs.
	DefaultReapEvery = 10 * time.Second
)

// Config configures a Pool. Start from DefaultConfig.
type Config struct {
	// Launcher starts the worker processes (required).
	Launcher launch.Launcher
	// Options says what to tell each new worker; nil: zero options.
	Options func() launch.WorkerOptions
	// Handler is told of the workers' lives and frames (required).
	Handler Handler
	// Warm is how many workers the pool keeps however long they are idle
	// (the host's Config.Workers): one more, the spare, is kept too; Reap
	// stops idle workers beyond Warm+1. A worker that exits while fewer
	// than Warm run or start is replaced.
	Warm int
	// Max bounds the workers running or starting (the host's MaxWorkers).
	Max int
	// IdleTTL is how long a worker beyond Warm+1 may stay idle. Default
	// DefaultIdleTTL.
	IdleTTL time.Duration
	// StartTimeout bounds a worker's launch and its Ready. Default
	// DefaultStartTimeout.
	StartTimeout time.Duration
	// ReapEvery is how often the background reaper calls Reap. Default
	// DefaultReapEvery.
	ReapEvery time.Duration
	// Clock times idle workers, the reaper, starts and stops (default
	// clock.Real).
	Clock clock.Clock
	// Logger gets the pool's logs (nil: discarded).
	Logger *slog.Logger
}

// DefaultConfig returns a Config with l and h and one warm worker of at
// most 32.
func DefaultConfig(l launch.Launcher, h Handler) Config {
	return Config{Launcher: l, Handler: h, Warm: 1, Max: 32, IdleTTL: DefaultIdleTTL,
		StartTimeout: DefaultStartTimeout, ReapEvery: DefaultReapEvery}
}

func (c *Config) validate() error {
	switch {
	case c.Launcher == nil:
		return fmt.Errorf("%w: no Launcher", ErrInvalidConfig)
	case c.Handler == nil:
		return fmt.Errorf("%w: no Handler", ErrInvalidConfig)
	case c.Warm < 0 || c.Max < 1 || c.Warm > c.Max:
		return fmt.Errorf("%w: need 0 <= Warm <= Max and Max >= 1", ErrInvalidConfig)
	case c.IdleTTL < 0 || c.StartTimeout < 0 || c.ReapEvery < 0:
		return fmt.Errorf("%w: IdleTTL, StartTimeout and ReapEvery must be >= 0", ErrInvalidConfig)
	}
	if c.IdleTTL == 0 {
		c.IdleTTL = DefaultIdleTTL
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.ReapEvery == 0 {
		c.ReapEvery = DefaultReapEvery
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Stats counts a pool's workers.
type Stats struct {
	// Live: workers past Ready (and its handling) that have not exited:
	// idle, in use, or stopping.
	Live int
	// Idle: workers on the idle list.
	Idle int
	// Starting: workers launching or waiting for their Ready, and those
	// whose Ready the handler is handling.
	Starting int
}

// Pool is a host's worker processes: it starts them, keeps the idle ones
// (last in, first out), reads their frames, stops those idle too long, and
// tells its Handler. It is safe for concurrent use; its lock is its own,
// and it never calls the Handler with it held.
type Pool struct {
	cfg Config
	log *slog.Logger
	// ctx ends with Close: launches and Ready waits give up.
	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // the pool's goroutines

	mu       sync.Mutex
	workers  map[*Worker]struct{} // past Ready, not exited
	hello    int                  // of workers, those whose Ready is being handled
	idle     []*Worker            // oldest first
	starting int                  // launching, waiting for Ready, or hello
	closed   bool
	reaper   clock.Timer // the next reap

	closeOnce sync.Once
}

// New checks cfg and returns a pool with no worker (Start starts them) and
// its reaper running. Close stops it.
func New(cfg Config) (*Pool, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Pool{cfg: cfg, log: cfg.Logger, workers: map[*Worker]struct{}{}}
	p.ctx, p.cancel = context.WithCancelCause(context.Background())
	p.mu.Lock()
	p.reaper = p.cfg.Clock.AfterFunc(p.cfg.ReapEvery, p.reap)
	p.mu.Unlock()
	return p, nil
}

// Start starts one worker in the background; it counts in Stats.Starting
// until its Ready is handled (or it fails: Handler.StartFailed). It
// returns ErrFull at Config.Max workers and ErrClosed after Close.
func (p *Pool) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.startLocked()
}

func (p *Pool) startLocked() error {
	if p.closed {
		return ErrClosed
	}
	if len(p.workers)-p.hello+p.starting >= p.cfg.Max {
		return ErrFull
	}
	p.starting++
	p.wg.Go(p.run)
	return nil
}

// Need starts workers for n tasks waiting for one: as many as n exceeds
// the workers already starting, within Config.Max. It returns how many it
// started.
func (p *Pool) Need(n int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	started := 0
	for missing := n - p.starting; missing > 0 && p.startLocked() == nil; missing-- {
		started++
	}
	return started
}

// Spare starts a worker if none is idle or starting (within Config.Max),
// so the next task does not wait for a process to start; Reap stops it if
// it stays idle beyond the warm pool. It reports whether it started one.
func (p *Pool) Spare() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle) == 0 && p.starting == 0 && p.startLocked() == nil
}

// Take takes the idle worker that went idle last.
func (p *Pool) Take() (*Worker, bool) { return p.TakeBest(nil) }

// TakeBest takes, of the idle workers score rates highest, the one that
// went idle last (score: how ready a worker is for the task, e.g. whether
// it has the task's module compiled). score runs with the pool's lock
// held, as the body of a Workers loop does; nil rates all alike.
func (p *Pool) TakeBest(score func(*Worker) int) (*Worker, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.idle)
	if n == 0 {
		return nil, false
	}
	i := n - 1
	if score != nil {
		best := score(p.idle[i])
		for j := n - 2; j >= 0; j-- {
			if s := score(p.idle[j]); s > best {
				i, best = j, s
			}
		}
	}
	w := p.idle[i]
	p.idle = slices.Delete(p.idle, i, i+1)
	w.state = stateBusy
	return w, true
}

// Idle puts w on the idle list, idle since Config.Clock's now. It reports false,
// and does nothing, if w is idle already, being reaped, has exited, or the
// pool is closed.
func (p *Pool) Idle(w *Worker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return false
	case w.state == stateHello:
		p.helloDoneLocked(w)
	case w.state != stateBusy:
		return false
	}
	w.state = stateIdle
	w.idleSince = p.cfg.Clock.Now()
	p.idle = append(p.idle, w)
	return true
}

// helloDoneLocked: w's Ready is handled; it counts as live, in use.
func (p *Pool) helloDoneLocked(w *Worker) {
	w.state = stateBusy
	p.hello--
	p.starting--
}

// Stats counts the pool's workers.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Live: len(p.workers) - p.hello, Idle: len(p.idle), Starting: p.starting}
}

// Workers yields the live workers (those Stats.Live counts), in no
// particular order, with the pool's lock held: the loop body must not call
// the Pool's methods nor block, so not write to a worker either (collect
// them first, slices.Collect(p.Workers()), to send them frames). PID, Kill
// and Value are fine.
func (p *Pool) Workers() iter.Seq[*Worker] {
	return func(yield func(*Worker) bool) {
		p.mu.Lock()
		defer p.mu.Unlock()
		for w := range p.workers {
			if w.state != stateHello && !yield(w) {
				return
			}
		}
	}
}

// Reap kills the workers idle for longer than Config.IdleTTL at now,
// oldest first, while more than Config.Warm+1 are idle: a burst of
// nested tasks must not leave processes behind for ever. It returns how
// many it killed; each is live until it has exited (Handler.Exited).
func (p *Pool) Reap(now time.Time) int {
	p.mu.Lock()
	n := 0
	for len(p.idle)-n > p.cfg.Warm+1 && now.Sub(p.idle[n].idleSince) > p.cfg.IdleTTL {
		p.idle[n].state = stateStopping
		n++
	}
	stop := slices.Clone(p.idle[:n])
	p.idle = slices.Delete(p.idle, 0, n)
	p.mu.Unlock()
	for _, w := range stop {
		w.Kill()
	}
	return len(stop)
}

// reap is the background reaper: it reaps, then comes back after
// Config.ReapEvery, until Close.
func (p *Pool) reap() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.wg.Add(1) // Close waits for it
	p.mu.Unlock()
	defer p.wg.Done()
	p.Reap(p.cfg.Clock.Now())
	p.mu.Lock()
	if !p.closed {
		p.reaper = p.cfg.Clock.AfterFunc(p.cfg.ReapEvery, p.reap)
	}
	p.mu.Unlock()
}

// Close stops the pool: no worker starts any more, launches under way
// give up, and every worker is stopped (Worker.Stop; Handler.Exited
// follows for each). It returns once the pool's goroutines (and so the
// Handler calls they make) have ended, or with ctx's error. The caller
// must not hold a lock the Handler takes.
func (p *Pool) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.reaper.Stop()
		ws := make([]*Worker, 0, len(p.workers))
		for w := range p.workers {
			ws = append(ws, w)
		}
		p.idle = nil
		p.mu.Unlock()
		for _, w := range ws {
			p.wg.Go(w.Stop)
		}
		p.cancel(ErrClosed)
	})
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run starts a worker, hands it to the Handler and serves its frames until
// it exits.
func (p *Pool) run() {
	w, hello, err := p.open()
	p.mu.Lock()
	if err == nil && p.closed {
		w.Kill()
		err = ErrClosed
	}
	if err != nil {
		p.starting--
		closed := p.closed
		p.mu.Unlock()
		if !closed {
			p.log.Error("starting a worker", "err", err)
			p.cfg.Handler.StartFailed(err)
		}
		return
	}
	w.state = stateHello
	p.hello++
	p.workers[w] = struct{}{}
	p.mu.Unlock()

	p.cfg.Handler.Ready(w, hello)
	p.mu.Lock()
	if w.state == stateHello {
		p.helloDoneLocked(w) // the handler uses it
	}
	p.mu.Unlock()
	p.serve(w)
}

// open launches a worker and waits for its Ready.
func (p *Pool) open() (*Worker, []byte, error) {
	ctx, cancel := context.WithCancelCause(p.ctx)
	defer cancel(nil)
	timeout := p.cfg.Clock.AfterFunc(p.cfg.StartTimeout, func() {
		cancel(fmt.Errorf("%w: not ready within %v", context.DeadlineExceeded, p.cfg.StartTimeout))
	})
	defer timeout.Stop()
	var opts launch.WorkerOptions
	if p.cfg.Options != nil {
		opts = p.cfg.Options()
	}
	proc, err := p.cfg.Launcher.Launch(ctx, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	w := &Worker{proc: proc, conn: ipc.NewConn(proc.Conn()), pid: proc.PID(), clock: p.cfg.Clock}
	// The worker says Ready once its runtime is set up.
	type hello struct {
		payload []byte
		err     error
	}
	ready := make(chan hello, 1)
	p.wg.Go(func() {
		t, payload, err := w.conn.Read(nil)
		if err == nil && t != ipc.TypeReady {
			err = fmt.Errorf("%w: frame %v before ready", ErrProtocol, t)
		}
		ready <- hello{payload, err}
	})
	var h hello
	select {
	case h = <-ready:
	case <-ctx.Done():
		h.err = context.Cause(ctx)
	}
	if h.err != nil {
		w.Kill() // which ends the read above
		return nil, nil, fmt.Errorf("%w: %w", ErrStart, h.err)
	}
	if ipc.ReadyHas(h.payload, ipc.ReadyBody) {
		w.speakBodies()
	}
	return w, h.payload, nil
}

// serve reads w's frames until it exits, then forgets it and tells the
// Handler.
func (p *Pool) serve(w *Worker) {
	var buf []byte
	for {
		typ, payload, err := w.conn.Read(buf)
		if err != nil {
			break
		}
		buf = payload[:0]
		if cap(payload) > KeepFrameBytes {
			buf = nil // the handler may keep it; and no 100 MiB buffer per worker
		}
		if typ == ipc.TypeWantBody {
			err = w.wantBody(payload) // the pool's own frame
		} else {
			err = p.cfg.Handler.Frame(w, typ, payload)
		}
		if err != nil {
			p.log.Error("worker protocol error", "pid", w.pid, "err", err)
			w.Kill()
			break
		}
	}
	exitErr := w.proc.Wait()
	w.dropBodies()
	p.mu.Lock()
	delete(p.workers, w)
	if w.state == stateIdle {
		p.idle = slices.DeleteFunc(p.idle, func(x *Worker) bool { return x == w })
	}
	w.state = stateGone
	if !p.closed && len(p.workers)-p.hello+p.starting < p.cfg.Warm {
		_ = p.startLocked() // a replacement for the warm pool
	}
	p.mu.Unlock()
	p.cfg.Handler.Exited(w, exitErr)
}
