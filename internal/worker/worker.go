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
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/confine"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/ipc"
	"github.com/rayhost/rayhost/internal/sandboxfs"
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
	pending map[uint64]chan ipc.Reply

	curMu   sync.Mutex
	current *execution
	// early holds cancels that arrived before their Exec started running
	// (both frames can be read before the run loop takes the Exec).
	early map[ids.TaskID]bool

	closed chan struct{}
	// prewarms are the prewarm goroutines: Run waits for them before it
	// closes the runtimes they compile in.
	prewarms sync.WaitGroup
}

type module struct {
	key      string // pages:path
	path     string
	rt       wazero.Runtime
	once     sync.Once
	compiled wazero.CompiledModule
	err      error
	idle     *instance // the instance kept for reuse
	// users counts the callers between module and unuse (guarded by
	// modMu); an evicted module's compiled code is closed by the last.
	users   int
	evicted bool
}

type instance struct {
	mod     api.Module
	invoke  api.Function
	mailbox []byte
	exec    *execution
	private bool // made for a task with grants: never reused
	mounts  []*sandboxfs.FS
}

// close ends the instance and releases its mounted directories.
func (inst *instance) close(ctx context.Context) {
	if inst.mod != nil {
		_ = inst.mod.Close(ctx)
	}
	for _, m := range inst.mounts {
		_ = m.Close()
	}
	inst.mounts = nil
}

type execution struct {
	task      ids.TaskID
	limits    ipc.Exec // the limits of the Exec (its other fields unused)
	cancelled chan struct{}
	cancelOne sync.Once
	result    []byte
	gotResult bool
	logged    uint64
}

// recycleMemoryBytes: an idle instance whose memory grew past this is closed.
const recycleMemoryBytes = 256 << 20

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
		modules: map[string]*module{}, actors: map[ids.TaskID]*instance{}, pending: map[uint64]chan ipc.Reply{}, early: map[ids.TaskID]bool{},
		closed: make(chan struct{}),
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
	ready := fmt.Appendf(nil, "%d", os.Getpid())
	if cfg.Confinement != nil {
		// Ready is "pid" or "pid\n" and the layers as JSON.
		layers, _ := json.Marshal(cfg.Confinement)
		ready = append(append(ready, '\n'), layers...)
	}
	if err := w.conn.Write(ipc.TypeReady, ready); err != nil {
		return err
	}

	execs := make(chan ipc.Exec, 1)
	readErr := make(chan error, 1)
	go func() { readErr <- w.readLoop(ctx, execs) }()
	for {
		select {
		case ex := <-execs:
			w.execute(ctx, ex)
		case err := <-readErr:
			close(w.closed)
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-ctx.Done():
			close(w.closed)
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
func (w *Worker) readLoop(ctx context.Context, execs chan<- ipc.Exec) error {
	var buf []byte
	for {
		t, payload, err := w.conn.Read(buf)
		if err != nil {
			return err
		}
		buf = payload[:0]
		switch t {
		case ipc.TypeExec:
			var ex ipc.Exec
			if err := ex.Decode(payload); err != nil {
				return fmt.Errorf("worker: exec: %w", err)
			}
			ex.Invocation = append([]byte(nil), ex.Invocation...)
			ex.ModulePath = string([]byte(ex.ModulePath))
			select {
			case execs <- ex:
			case <-ctx.Done():
				return ctx.Err()
			}
		case ipc.TypeReply:
			var r ipc.Reply
			if err := r.Decode(payload); err != nil {
				return fmt.Errorf("worker: reply: %w", err)
			}
			r.Payload = append([]byte(nil), r.Payload...)
			w.seqMu.Lock()
			ch := w.pending[r.Seq]
			delete(w.pending, r.Seq)
			w.seqMu.Unlock()
			if ch != nil {
				ch <- r
			}
		case ipc.TypeCancel:
			var c ipc.Cancel
			if err := c.Decode(payload); err != nil {
				return fmt.Errorf("worker: cancel: %w", err)
			}
			w.curMu.Lock()
			if e := w.current; e != nil && e.task == c.Task {
				e.cancel()
			} else {
				if len(w.early) > 1024 { // cancels for tasks that never came
					clear(w.early)
				}
				w.early[c.Task] = true
			}
			w.curMu.Unlock()
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

func (e *execution) cancel() { e.cancelOne.Do(func() { close(e.cancelled) }) }

// runtime returns the runtime for guests limited to pages of memory (0:
// wazero's default, 4 GiB), with WASI and the rayhost host functions.
func (w *Worker) runtime(ctx context.Context, pages uint32) (wazero.Runtime, error) {
	w.rtMu.Lock()
	defer w.rtMu.Unlock()
	if rt := w.runtimes[pages]; rt != nil {
		return rt, nil
	}
	rc := w.base
	if pages > 0 {
		rc = rc.WithMemoryLimitPages(pages)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("worker: wasi: %w", err)
	}
	if err := w.instantiateHostModule(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, err
	}
	w.runtimes[pages] = rt
	return rt, nil
}

// module returns the module at path compiled for the runtime of the given
// memory limit, compiling it once.
func (w *Worker) module(ctx context.Context, path string, pages uint32) (*module, error) {
	key := fmt.Sprintf("%d:%s", pages, path)
	w.modMu.Lock()
	m := w.modules[key]
	if m == nil {
		m = &module{key: key, path: path}
		w.modules[key] = m
	} else if i := slices.Index(w.order, key); i >= 0 {
		w.order = slices.Delete(w.order, i, i+1) // most recently used last
	}
	w.order = append(w.order, key)
	// Least recently used first: a module no task used for a while leaves
	// this worker, its compiled code too (it costs tens of MiB).
	for len(w.order) > w.cfg.MaxModules {
		old := w.order[0]
		w.order = w.order[1:]
		if om := w.modules[old]; om != nil {
			if om.idle != nil {
				_ = om.idle.mod.Close(ctx)
				om.idle = nil
			}
			om.evicted = true
			if om.users == 0 {
				closeCompiled(ctx, om)
			}
		}
		delete(w.modules, old)
	}
	m.users++
	w.modMu.Unlock()
	defer func() {
		if m.err != nil {
			w.unuse(m)
		}
	}()
	m.once.Do(func() {
		if m.rt, m.err = w.runtime(ctx, pages); m.err != nil {
			return
		}
		wasm, err := os.ReadFile(path)
		if err != nil {
			m.err = fmt.Errorf("reading module: %w", err)
			return
		}
		// A cold compile of a 2 MB Go guest takes 0.55 s on one core, 0.30 s
		// on two (measured here).
		cctx := experimental.WithCompilationWorkers(ctx, runtime.NumCPU())
		m.compiled, m.err = m.rt.CompileModule(cctx, wasm)
		if m.err != nil {
			m.err = fmt.Errorf("not a valid Wasm module: %w", m.err)
			return
		}
		exports := m.compiled.ExportedFunctions()
		for _, name := range []string{abi.ExportVersion, abi.ExportInvoke} {
			if _, ok := exports[name]; !ok {
				m.err = fmt.Errorf("the module does not export %s: build it with guest-sdk/ray and -buildmode=c-shared", name)
				return
			}
		}
	})
	return m, m.err
}

// unuse ends a use of m that module began.
func (w *Worker) unuse(m *module) {
	w.modMu.Lock()
	defer w.modMu.Unlock()
	m.users--
	if m.users == 0 && m.evicted {
		closeCompiled(context.Background(), m)
	}
}

// closeCompiled releases an evicted module's compiled code. Instances made
// from it (an actor's) keep working: wazero allows Close with outstanding
// instances.
func closeCompiled(ctx context.Context, m *module) {
	if m.compiled != nil {
		_ = m.compiled.Close(ctx)
		m.compiled = nil
	}
}

// prewarm compiles the module at path and instantiates it, so that its first
// task here pays neither (2–3 ms of instantiation, more when every worker
// does it at once).
func (w *Worker) prewarm(ctx context.Context, path string, pages uint32) {
	m, err := w.module(ctx, path, pages)
	if err != nil {
		return
	}
	defer w.unuse(m)
	w.modMu.Lock()
	warm := m.idle != nil
	w.modMu.Unlock()
	if warm {
		return
	}
	if inst, err := w.instance(ctx, m, abi.Grants{}, false); err == nil {
		w.release(m, inst)
	}
}

// instance takes m's idle instance or makes a new one. A task with grants
// gets an instance of its own, configured with them.
func (w *Worker) instance(ctx context.Context, m *module, grants abi.Grants, private bool) (_ *instance, err error) {
	private = private || !grants.Empty()
	if !private {
		w.modMu.Lock()
		inst := m.idle
		m.idle = nil
		w.modMu.Unlock()
		if inst != nil {
			return inst, nil
		}
	}
	inst := &instance{private: private}
	defer func() {
		// wazero may panic on a module it should have refused: that must
		// fail this task, not the worker.
		if r := recover(); r != nil {
			err = fmt.Errorf("instantiating the module: %v", r)
		}
	}()
	out := &logWriter{w: w, inst: inst, stream: 1}
	errw := &logWriter{w: w, inst: inst, stream: 2}
	mc := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions("_initialize").
		WithSysNanotime().WithSysWalltime().WithSysNanosleep().
		WithRandSource(rand.Reader).
		WithStdout(out).WithStderr(errw)
	// No filesystem, environment or arguments unless granted: a guest reaches
	// the world only through the rayhost host functions.
	if !grants.Empty() {
		// Each mount is an os.Root: no path, `..` or symbolic link leads
		// out of it, and the guest can make no links (see sandboxfs).
		fs := wazero.NewFSConfig()
		for _, mnt := range grants.Mounts {
			root, err := sandboxfs.New(mnt.Host, mnt.ReadOnly)
			if err != nil {
				inst.close(ctx)
				return nil, fmt.Errorf("mounting %s at %s: %w", mnt.Host, mnt.Guest, err)
			}
			inst.mounts = append(inst.mounts, root)
			fs = fs.(sysfs.FSConfig).WithSysFSMount(root, mnt.Guest)
		}
		mc = mc.WithFSConfig(fs)
		for _, kv := range grants.Env {
			mc = mc.WithEnv(kv.Name, kv.Value)
		}
	}
	ictx := withInstance(ctx, inst)
	if mmapAllocator != nil {
		ictx = experimental.WithMemoryAllocator(ictx, mmapAllocator)
	}
	mod, err := m.rt.InstantiateModule(ictx, m.compiled, mc)
	if err != nil {
		inst.close(ctx)
		return nil, fmt.Errorf("instantiating the module: %w", err)
	}
	inst.mod = mod
	res, err := mod.ExportedFunction(abi.ExportVersion).Call(ctx)
	if err != nil {
		inst.close(ctx)
		return nil, fmt.Errorf("calling %s: %w", abi.ExportVersion, err)
	}
	if v := int32(res[0]); v != abi.Version {
		inst.close(ctx)
		return nil, fmt.Errorf("the module speaks guest ABI v%d, this host speaks v%d", v, abi.Version)
	}
	inst.invoke = mod.ExportedFunction(abi.ExportInvoke)
	return inst, nil
}

// keep puts an instance back after a call: an actor's instance stays with
// its actor (once its constructor succeeded), others go to the pool.
func (w *Worker) keep(m *module, inst *instance, ex ipc.Exec, ok bool) {
	switch {
	case ex.Actor.IsZero():
		w.release(m, inst)
	case ex.ActorCreate && !ok:
		inst.close(context.Background())
	case ex.ActorCreate:
		w.modMu.Lock()
		w.actors[ex.Actor] = inst
		w.modMu.Unlock()
	}
}

func (w *Worker) release(m *module, inst *instance) {
	w.modMu.Lock()
	defer w.modMu.Unlock()
	// A Wasm memory never shrinks: an instance that grew large is dropped
	// rather than kept holding that memory while idle.
	big := inst.mod.Memory() != nil && inst.mod.Memory().Size() > recycleMemoryBytes
	if !inst.private && !big && m.idle == nil && w.modules[m.key] == m {
		m.idle = inst
		return
	}
	inst.close(context.Background())
}

func (w *Worker) execute(ctx context.Context, ex ipc.Exec) {
	e := &execution{task: ex.Task, limits: ex, cancelled: make(chan struct{})}
	w.curMu.Lock()
	w.current = e
	if w.early[ex.Task] {
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
		w.send(ipc.TypeDone, done.Encode(nil))
		return
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
			return
		}
	default:
		// An actor's instance is its own for its lifetime.
		if inst, err = w.instance(ctx, m, ex.Grants, ex.ActorCreate); err != nil {
			done.Kind, done.Trap = abi.ErrorBadRequest, err.Error()
			w.send(ipc.TypeDone, done.Encode(nil))
			return
		}
	}
	inst.exec = e
	inst.mailbox = ex.Invocation
	res, err := inst.invoke.Call(withInstance(ctx, inst), uint64(len(ex.Invocation)))
	inst.exec = nil
	inst.mailbox = nil
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
		if errors.Is(err, errOutputLimit) {
			done.Kind, done.Trap = abi.ErrorLimit, fmt.Sprintf("the task wrote more than %d bytes of output", ex.MaxLogBytes)
		}
	case !e.gotResult:
		w.keep(m, inst, ex, false)
		done.Kind, done.Trap = abi.ErrorHost, "the guest returned without a result"
	default:
		done.Status = abi.Status(int32(res[0]))
		done.Result = e.result
		w.keep(m, inst, ex, done.Status == abi.StatusOK)
	}
	w.send(ipc.TypeDone, done.Encode(nil))
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

func (l *logWriter) Write(p []byte) (int, error) {
	var task ids.TaskID
	if e := l.inst.exec; e != nil {
		task = e.task
		e.logged += uint64(len(p))
		if max := e.limits.MaxLogBytes; max > 0 && e.logged > max {
			panic(errOutputLimit)
		}
	}
	m := ipc.Log{Task: task, Stream: l.stream, Data: p}
	l.w.send(ipc.TypeLog, m.Encode(nil))
	return len(p), nil
}
