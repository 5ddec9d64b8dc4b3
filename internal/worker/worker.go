// Package worker is the process that runs guests: `rayhost worker`, started
// and supervised by a host. It compiles modules with wazero (with an on-disk
// compilation cache shared by all workers), keeps one instance per module
// for reuse, runs one invocation at a time, and relays the guest's host calls
// to the host over the socket it was given.
//
// Guests run here and not in the host because compiled Wasm cannot be
// preempted: a guest in a long loop would hold up the garbage collector of
// its process, and with it the host's RPC and gossip. A worker can also be
// killed (force cancel) without harming the host.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/sys"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/confine"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/ipc"
)

// Config configures a worker.
type Config struct {
	// CacheDir holds wazero's compilation cache; "" compiles every module anew.
	CacheDir string
	// MemoryLimitPages caps a guest's memory in 64 KiB pages (0: wazero's
	// default of 4 GiB).
	MemoryLimitPages uint32
	// MaxModules is how many compiled modules the worker keeps.
	MaxModules int
	Logger     *slog.Logger
	// Confinement is reported to the host with Ready (nil: nothing to
	// report, an in-process worker).
	Confinement []confine.Layer
}

// DefaultConfig returns the configuration `rayhost worker` starts with.
func DefaultConfig() Config {
	return Config{MaxModules: 16, Logger: slog.New(slog.DiscardHandler)}
}

// Worker runs invocations sent by its host.
type Worker struct {
	cfg  Config
	conn *ipc.Conn
	base wazero.RuntimeConfig
	log  *slog.Logger

	// One runtime per guest memory limit: wazero sets the limit per runtime.
	rtMu     sync.Mutex
	runtimes map[uint32]wazero.Runtime

	modMu   sync.Mutex
	modules map[string]*module // by path
	actors  map[ids.TaskID]*instance
	order   []string // compile order, for eviction

	seqMu   sync.Mutex
	seq     uint64
	pending map[uint64]chan reply

	curMu   sync.Mutex
	current *execution
	// running holds the calls of concurrent actors handed to their
	// instance (concurrent.go), for cancels.
	running map[ids.TaskID]*execution
	// early holds cancels that arrived before their Exec started running
	// (both frames can be read before the run loop takes the Exec).
	early map[ids.TaskID]bool
	// queue holds the Execs read and not started yet, in order: a host
	// may send a task while another runs (pipelining, docs/ARCHITECTURE.md
	// "A task's life"), so that it starts without a round trip. Guarded by
	// curMu; wake tells the run loop.
	queue []ipc.Exec
	wake  chan struct{}
	// giveBacks are the tasks the read loop took out of queue whose
	// Returned frames are not written yet (guarded by curMu; the read
	// loop never writes: see flushGiveBacks). outMu orders their frames
	// before the frames of the next task the run loop takes.
	giveBacks []ids.TaskID
	outMu     sync.Mutex
	// waiting counts the round trips to the host in flight (guarded by
	// curMu): a plain task that comes meanwhile goes back at once, since
	// the task ahead of it may be blocked.
	waiting int

	// closed is closed (shut) once the host's connection is gone or Run
	// ends: whatever waits on the host gives up.
	closed    chan struct{}
	closeOnce sync.Once
	// bodies are the reads of large replies' bodies asked for and not
	// yet done (body.go), by sequence number (guarded by seqMu).
	bodies map[uint64]*bodyRead
	// prewarms are the prewarm goroutines: Run waits for them before it
	// closes the runtimes they compile in.
	prewarms sync.WaitGroup
}

type execution struct {
	task      ids.TaskID
	limits    ipc.Exec // the limits of the Exec (its other fields unused)
	cancelled chan struct{}
	cancelOne sync.Once
	result    []byte
	gotResult bool
	logged    uint64

	// For a call of a concurrent actor (concurrent.go): its instance,
	// whether the guest was given it, whether it ended with op done, its
	// blocking ops in flight (under the instance's lock), and ended, closed
	// once the call is over in this worker, which ends what still waits
	// on its behalf.
	inst     *instance
	given    bool
	done     bool
	inflight int
	ended    chan struct{}
	endOnce  sync.Once
}

// end marks a concurrent actor's call over in this worker.
func (e *execution) end() {
	if e.ended != nil {
		e.endOnce.Do(func() { close(e.ended) })
	}
}

func (e *execution) isCancelled() bool {
	select {
	case <-e.cancelled:
		return true
	default:
		return false
	}
}

// errOutputLimit aborts a guest that prints more than it may: the guest
// cannot be interrupted, but its writes are host calls, and a host call may
// end the guest's call by panicking (wazero turns it into an error).
var errOutputLimit = errors.New("the task's output exceeded its limit")

// Run serves the host on rw until it closes the connection or ctx ends.
func Run(ctx context.Context, rw io.ReadWriteCloser, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxModules <= 0 {
		cfg.MaxModules = 16
	}
	rc := wazero.NewRuntimeConfigCompiler()
	if cfg.CacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return fmt.Errorf("worker: compilation cache: %w", err)
		}
		rc = rc.WithCompilationCache(cache)
	}
	w := &Worker{
		cfg: cfg, conn: ipc.NewConn(rw), base: rc, log: cfg.Logger, runtimes: map[uint32]wazero.Runtime{},
		modules: map[string]*module{}, actors: map[ids.TaskID]*instance{}, pending: map[uint64]chan reply{}, bodies: map[uint64]*bodyRead{}, early: map[ids.TaskID]bool{},
		running: map[ids.TaskID]*execution{},
		closed:  make(chan struct{}), wake: make(chan struct{}, 1),
	}
	defer w.conn.Close()
	defer func() {
		for _, rt := range w.runtimes {
			rt.Close(context.Background())
		}
	}()
	// A module compiling in a prewarm goroutine must not see its runtime
	// closed under it (wazero panics): the runtimes close once none runs.
	defer w.prewarms.Wait()
	if _, err := w.runtime(ctx, cfg.MemoryLimitPages); err != nil {
		return err
	}
	// "pipeline": this worker queues Execs that come while one runs and
	// gives them back (ipc.TypeUnqueue, ipc.TypeReturned).
	ready := fmt.Appendf(nil, "%d %s %s", os.Getpid(), ipc.ReadyPipeline, ipc.ReadyBody)
	if cfg.Confinement != nil {
		// Ready is "pid capabilities…" or that, "\n" and the layers as JSON.
		layers, _ := json.Marshal(cfg.Confinement)
		ready = append(append(ready, '\n'), layers...)
	}
	if err := w.conn.Write(ipc.TypeReady, ready); err != nil {
		return err
	}

	readErr := make(chan error, 1)
	go func() {
		err := w.readLoop(ctx)
		w.shut() // now, not after the invoke running ends: it may wait on the host
		readErr <- err
	}()
	for {
		select {
		case <-w.wake:
			for {
				ex, ok := w.dequeue()
				if !ok {
					break
				}
				// A concurrent actor's invoke may leave calls to run next.
				for next := &ex; next != nil; {
					next = w.execute(ctx, *next)
				}
				if ctx.Err() != nil {
					break
				}
			}
		case err := <-readErr:
			w.shut()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-ctx.Done():
			w.shut()
			// The read loop ends (and starts no more prewarms) once the
			// connection is closed.
			w.conn.Close()
			<-readErr
			return ctx.Err()
		}
	}
}

// readLoop reads the host's frames. Exec goes to the run loop; replies and
// cancels are handled here, so they reach an execution that is blocked in a
// host call.
func (w *Worker) readLoop(ctx context.Context) error {
	var buf []byte
	for {
		t, n, err := w.conn.ReadHeader()
		if err != nil {
			return err
		}
		if t == ipc.TypeBody {
			if err := w.readBody(n); err != nil {
				return err
			}
			continue
		}
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		payload := buf[:n]
		if err := w.conn.ReadFull(payload); err != nil {
			return err
		}
		buf = payload[:0]
		switch t {
		case ipc.TypeExec:
			var ex ipc.Exec
			if err := ex.Decode(payload); err != nil {
				return fmt.Errorf("worker: exec: %w", err)
			}
			if n >= ipc.BodyBytes {
				// Large arguments: the frame's buffer is the
				// invocation's, and the next frame is read into another.
				buf = nil
			} else {
				ex.Invocation = append([]byte(nil), ex.Invocation...)
			}
			ex.ModulePath = string([]byte(ex.ModulePath))
			if w.deliver(ex) {
				continue // to the serve loop of its actor's instance
			}
			w.enqueue(ex)
		case ipc.TypeReply:
			var r ipc.Reply
			if err := r.Decode(payload); err != nil {
				return fmt.Errorf("worker: reply: %w", err)
			}
			if n >= ipc.BodyBytes {
				// A large reply from a host that does not hold bodies:
				// the frame's buffer goes to the call.
				buf = nil
			} else {
				r.Payload = append([]byte(nil), r.Payload...)
			}
			w.deliverReply(r.Seq, reply{Reply: r})
		case ipc.TypeReplyHead:
			var h ipc.ReplyHead
			if err := h.Decode(payload); err != nil {
				return fmt.Errorf("worker: reply head: %w", err)
			}
			r := reply{Reply: ipc.Reply{Seq: h.Seq, Code: h.Code, Payload: append([]byte(nil), h.Head...)}, body: w.newBody(h.Seq, int(h.BodyLen))}
			if !w.deliverReply(h.Seq, r) {
				// Its call is gone: the host may drop the body. Not from
				// the read loop, which must never wait for a write.
				go r.body.release()
			}
		case ipc.TypeCancel:
			var c ipc.Cancel
			if err := c.Decode(payload); err != nil {
				return fmt.Errorf("worker: cancel: %w", err)
			}
			if w.giveBack(c.Task) {
				continue // it never started: the host ends it as cancelled
			}
			w.curMu.Lock()
			call := w.running[c.Task]
			if call != nil {
				// cancelCall below, without curMu (it takes the
				// instance's lock, which is taken before curMu).
			} else if e := w.current; e != nil && e.task == c.Task {
				e.cancel()
			} else {
				if len(w.early) > 1024 { // cancels for tasks that never came
					// Not those of calls waiting in the queue (an actor's,
					// which are never given back): they must not run.
					for id := range w.early {
						if !slices.ContainsFunc(w.queue, func(ex ipc.Exec) bool { return ex.Task == id }) {
							delete(w.early, id)
						}
					}
				}
				w.early[c.Task] = true
			}
			w.curMu.Unlock()
			if call != nil {
				call.cancelCall()
			}
		case ipc.TypeUnqueue:
			var c ipc.Cancel
			if err := c.Decode(payload); err != nil {
				return fmt.Errorf("worker: unqueue: %w", err)
			}
			w.giveBack(c.Task) // started already: its Done follows
		case ipc.TypeLoad:
			var l ipc.Load
			if err := l.Decode(payload); err != nil {
				return fmt.Errorf("worker: load: %w", err)
			}
			w.prewarms.Add(1)
			go func() {
				defer w.prewarms.Done()
				w.prewarm(ctx, l.ModulePath, l.MemoryPages)
			}()
		default:
			return fmt.Errorf("worker: unknown frame type %d", t)
		}
	}
}

// enqueue queues ex for the run loop. A task (not an actor's call)
// cancelled before it came goes back to the host at once.
func (w *Worker) enqueue(ex ipc.Exec) {
	w.curMu.Lock()
	if ex.Actor.IsZero() && (w.early[ex.Task] || w.waiting > 0 && w.current != nil) {
		delete(w.early, ex.Task)
		w.giveBacks = append(w.giveBacks, ex.Task)
		w.curMu.Unlock()
		go w.flushGiveBacks()
		return
	}
	w.queue = append(w.queue, ex)
	w.curMu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default: // the run loop has been told
	}
}

// dequeue takes the next Exec to run. The Returned frames of the tasks
// given back ahead of it are written first: the host must read that a
// task ahead was given back before it reads anything of the next one (a
// Done, a call), or it would take them for the task it believes runs.
func (w *Worker) dequeue() (ipc.Exec, bool) {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	w.curMu.Lock()
	back := w.giveBacks
	w.giveBacks = nil
	var ex ipc.Exec
	ok := len(w.queue) > 0
	if ok {
		ex = w.queue[0]
		w.queue[0] = ipc.Exec{}
		w.queue = w.queue[1:]
	}
	w.curMu.Unlock()
	for _, t := range back {
		w.returned(t, false) // with the next task's first frame
	}
	return ex, ok
}

// flushGiveBacks writes the Returned frames of the tasks the read loop
// gave back. The read loop never writes: the host's reader of this
// worker may be writing to it at that moment (several Unqueues at once)
// and would wait for the read loop while the read loop waited for it to
// read; so the read loop only notes them (giveBacks) and starts this.
// Returned frames may arrive in any order among themselves: each names
// its task.
func (w *Worker) flushGiveBacks() {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	w.curMu.Lock()
	back := w.giveBacks
	w.giveBacks = nil
	w.curMu.Unlock()
	for i, t := range back {
		w.returned(t, i == len(back)-1)
	}
}

// giveBack takes task out of the queue, if it waits there and is not an
// actor's call, and tells the host (ipc.TypeReturned). It reports whether
// it did.
func (w *Worker) giveBack(task ids.TaskID) bool {
	w.curMu.Lock()
	i := slices.IndexFunc(w.queue, func(ex ipc.Exec) bool { return ex.Task == task && ex.Actor.IsZero() })
	if i >= 0 {
		w.queue = slices.Delete(w.queue, i, i+1)
		w.giveBacks = append(w.giveBacks, task)
	}
	w.curMu.Unlock()
	if i < 0 {
		return false
	}
	go w.flushGiveBacks()
	return true
}

// giveBackQueued gives the host back every task queued behind the running
// one (not actors' calls), buffered: the running task is about to block
// (a round trip to the host), and the tasks behind it must not wait for it
// while they could run elsewhere, nor hold the resources its children need.
func (w *Worker) giveBackQueued() {
	w.curMu.Lock()
	var back []ids.TaskID
	w.queue = slices.DeleteFunc(w.queue, func(ex ipc.Exec) bool {
		if ex.Actor.IsZero() {
			back = append(back, ex.Task)
			return true
		}
		return false
	})
	w.curMu.Unlock()
	for _, t := range back {
		w.returned(t, false)
	}
}

// returned sends a Returned frame for task; unless flush, with the next
// frame written (or at most ipc's lazy flush delay later).
func (w *Worker) returned(task ids.TaskID, flush bool) {
	m := ipc.Cancel{Task: task}
	var err error
	if flush {
		err = w.conn.Write(ipc.TypeReturned, m.Encode(nil))
	} else {
		err = w.conn.Buffer(ipc.TypeReturned, m.Encode(nil))
	}
	if err != nil {
		w.log.Debug("worker: write to host failed", "err", err)
	}
}

func (w *Worker) shut() { w.closeOnce.Do(func() { close(w.closed) }) }

func (e *execution) cancel() { e.cancelOne.Do(func() { close(e.cancelled) }) }

// execute runs one Exec. For a concurrent actor's call it returns the call
// to run next, if the invoke left any (endServing).
func (w *Worker) execute(ctx context.Context, ex ipc.Exec) (next *ipc.Exec) {
	e := &execution{task: ex.Task, limits: ex, cancelled: make(chan struct{})}
	w.curMu.Lock()
	w.current = e
	early := w.early[ex.Task]
	if early {
		delete(w.early, ex.Task)
		e.cancel()
	}
	w.curMu.Unlock()
	defer func() {
		w.curMu.Lock()
		w.current = nil
		w.curMu.Unlock()
	}()

	done := ipc.Done{Task: ex.Task}
	m, err := w.module(ctx, ex.ModulePath, ex.MemoryPages)
	if err != nil {
		done.Kind, done.Trap = abi.ErrorBadRequest, err.Error()
		w.unserve(ex, done) // the read loop handed it over as a serve loop's first call
		w.send(ipc.TypeDone, done.Encode(nil))
		return nil
	}
	defer w.unuse(m)
	var inst *instance
	switch {
	case !ex.Actor.IsZero() && !ex.ActorCreate:
		w.modMu.Lock()
		inst = w.actors[ex.Actor]
		w.modMu.Unlock()
		if inst == nil {
			done.Kind, done.Trap = abi.ErrorHost, fmt.Sprintf("actor %s does not live in this worker", ex.Actor)
			w.send(ipc.TypeDone, done.Encode(nil))
			return nil
		}
	default:
		// An actor's instance is its own for its lifetime.
		if inst, err = w.instance(ctx, m, ex.Grants, ex.ActorCreate); err != nil {
			done.Kind, done.Trap = abi.ErrorBadRequest, err.Error()
			w.send(ipc.TypeDone, done.Encode(nil))
			return nil
		}
	}
	c := inst.conc
	if early && c == nil && !ex.Actor.IsZero() && !ex.ActorCreate {
		// An actor's call cancelled before it started (it waited in the
		// queue behind the actor's running call): it never runs, and its
		// Done comes in its turn, so the host reads the actor's Dones in
		// the order it sent the calls.
		te := abi.TaskError{Kind: abi.ErrorCancelled, TaskID: ex.Task.String(), Message: "cancelled before it started"}
		done.Status, done.Result = abi.StatusError, (&abi.Result{Values: []abi.Value{te.Encode()}}).Encode(nil)
		w.send(ipc.TypeDone, done.Encode(nil))
		return nil
	}
	if c != nil {
		// A concurrent actor's call: the invoke may serve others too.
		w.serveFirst(inst, e)
		defer w.unregister(e)
	}
	inst.exec = e
	inst.setMailbox(ex.Invocation)
	res, err := inst.invoke.Call(withInstance(ctx, inst), uint64(len(ex.Invocation)))
	inst.exec = nil
	inst.setMailbox(nil)
	actor := !ex.Actor.IsZero()
	switch {
	case err != nil:
		// A trap leaves the guest's Go runtime in an unknown state: never
		// reuse the instance (for an actor, the host restarts it).
		inst.close(ctx)
		if actor {
			w.modMu.Lock()
			delete(w.actors, ex.Actor)
			w.modMu.Unlock()
		}
		done.Kind, done.Trap = abi.ErrorTrap, trapMessage(err)
		if exit := (*sys.ExitError)(nil); errors.As(err, &exit) {
			// A guest that exits (os.Exit, even with 0) ends its process in
			// Ray's terms: a system failure, retried within max_retries,
			// worker_died once they are spent; an actor restarts.
			done.Kind = abi.ErrorWorkerDied
		}
		if errors.Is(err, errOutputLimit) {
			done.Kind, done.Trap = abi.ErrorLimit, fmt.Sprintf("the task wrote more than %d bytes of output", ex.MaxLogBytes)
		}
	case c != nil && e.done:
		// Its Done went with op done.
		return w.endServing(inst, e, nil)
	case !e.gotResult:
		w.keep(m, inst, ex, false)
		done.Kind, done.Trap = abi.ErrorHost, "the guest returned without a result"
	default:
		done.Status = abi.Status(int32(res[0]))
		done.Result = e.result
		w.keep(m, inst, ex, done.Status == abi.StatusOK)
	}
	if c != nil {
		var fail *ipc.Done
		if err != nil {
			fail = &done
		}
		next = w.endServing(inst, e, fail)
		if e.done {
			return next // its Done went with op done
		}
	}
	if c == nil && w.queued() {
		// The next task runs at once: its frames (or ipc's lazy flush)
		// carry this Done, so that a pipeline's Dones cost one write.
		if err := w.conn.Buffer(ipc.TypeDone, done.Encode(nil)); err != nil {
			w.log.Debug("worker: write to host failed", "err", err)
		}
		return next
	}
	w.send(ipc.TypeDone, done.Encode(nil))
	return next
}

// queued reports whether an Exec waits to run.
func (w *Worker) queued() bool {
	w.curMu.Lock()
	defer w.curMu.Unlock()
	return len(w.queue) > 0
}

func trapMessage(err error) string {
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		return fmt.Sprintf("the guest exited with code %d", exit.ExitCode())
	}
	return err.Error()
}

func (w *Worker) send(t ipc.Type, payload []byte) {
	if err := w.conn.Write(t, payload); err != nil {
		w.log.Debug("worker: write to host failed", "err", err)
	}
}

// logWriter forwards a guest's stdout or stderr to the host, tagged with the
// task running at the time.
type logWriter struct {
	w      *Worker
	inst   *instance
	stream uint8
}

// On a concurrent actor's instance the output of all the calls an invoke
// serves is one stream: it is charged to the invoke, whose budget is
// MaxLogBytes for each call it was given, and tagged with the invoke's
// first call while that runs, then with another running call (output
// cannot be told apart by call: the guest writes it with WASI's fd_write).
func (l *logWriter) Write(p []byte) (int, error) {
	var task ids.TaskID
	if e := l.inst.exec; e != nil {
		task = e.task
		limit := e.limits.MaxLogBytes
		if c := l.inst.conc; c != nil {
			c.mu.Lock()
			if e.done {
				for _, other := range c.calls {
					if other.given {
						task = other.task
						break
					}
				}
			}
			limit *= uint64(max(1, c.served))
			c.mu.Unlock()
		}
		e.logged += uint64(len(p))
		if limit > 0 && e.logged > limit {
			panic(errOutputLimit)
		}
	}
	m := ipc.Log{Task: task, Stream: l.stream, Data: p}
	l.w.send(ipc.TypeLog, m.Encode(nil))
	return len(p), nil
}
