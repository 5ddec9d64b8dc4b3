// This file holds the worker's compiled modules and their instances: the
// wazero runtimes per memory limit, compiling and evicting modules, and
// taking, keeping and recycling instances.

package worker

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ipc"
	"github.com/rayhost/rayhost/internal/sandboxfs"
)

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
	body    *body // the rest of the mailbox, if it is a large reply (body.go)
	exec    *execution
	conc    *conc // a concurrent actor's (concurrent.go); nil otherwise
	private bool  // made for a task with grants: never reused
	mounts  []*sandboxfs.FS
}

// setMailbox places b in the mailbox; a large reply's body that was there
// is let go (the host drops it).
func (inst *instance) setMailbox(b []byte) {
	if inst.body != nil {
		inst.body.release()
		inst.body = nil
	}
	inst.mailbox = b
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

// recycleMemoryBytes: an idle instance whose memory grew past this is closed.
const recycleMemoryBytes = 256 << 20

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
		if ex.MaxConcurrency > 1 {
			inst.conc = newConc() // its calls may run at once (concurrent.go)
		}
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
