package owner

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"time"

	"github.com/rayhost/rayhost/host/internal/modules"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// module is a registered Wasm module (see package modules).
type module = modules.Module

// forGuests returns vals as the guests of mod read them: a value in a
// codec the module does not speak (one built before the codec was) is
// converted to JSON, in a copy of vals.
func forGuests(mod *module, vals []abi.Value) []abi.Value {
	var out []abi.Value
	for i, v := range vals {
		if mod != nil && mod.Desc.Speaks(v.Codec) {
			continue
		}
		js, err := v.ToJSON()
		if err != nil || js.Codec == v.Codec {
			continue // malformed values were refused where they came in
		}
		if out == nil {
			out = append([]abi.Value(nil), vals...)
		}
		out[i] = js
	}
	if out == nil {
		return vals
	}
	return out
}

// newModules returns the host's module registry and call policy.
func (ad *admission) newModules() (err error) {
	h := ad.o
	h.mods, err = modules.New(modules.Config{
		Dir:            filepath.Join(h.cfg.DataDir, "modules"),
		MaxModuleBytes: h.cfg.MaxModuleBytes, MaxModules: h.cfg.MaxModules,
		MaxFunctions: h.cfg.MaxModuleFunctions, MaxFunctionBodyBytes: h.cfg.MaxFunctionBodyBytes,
		CompileTimeout: h.cfg.CompileTimeout, MaxCompiling: max(2, int(h.cfg.NumCPUs)), Logger: h.log,
	}, hostCompiler{h})
	if err != nil {
		return err
	}
	h.policy, err = modules.NewPolicy(modules.PolicyConfig{AllowedDirs: h.cfg.AllowedDirs,
		MaxTaskMemoryLimit: h.cfg.MaxTaskMemoryLimit, MaxTaskTimeout: h.cfg.MaxTaskTimeout})
	return err
}

// hostCompiler describes modules with the host's workers.
type hostCompiler struct{ h *Owner }

func (c hostCompiler) Describe(ctx context.Context, mod *module, timeout time.Duration) (abi.Value, error) {
	h := c.h
	t := &task{id: ids.NewTaskID(), mod: mod, kind: abi.KindDescribe, numReturns: 1, req: scheduler.Resources{}, maxRetries: 1,
		limits: abi.Limits{TimeoutNs: int64(timeout)}}
	h.submit(ctx, t)
	vals, err := h.objs.Get(ctx, t.returns(), -1, nil)
	if err != nil {
		return abi.Value{}, err
	}
	return vals[0], nil
}

// Warm has idle workers compile the module ahead of its tasks: at most
// one fewer than the machine's cores at once (compiling a Go guest from the
// cache takes a core for tens of milliseconds; more at once would slow the
// compile a first task waits for, and the host), and none that ran a task
// of it (the one that described it has it, and a load there would make a
// second instance beside the one a task may be using). The others compile
// it for their first task of it, or when they start.
func (c hostCompiler) Warm(digest, path string) {
	h := c.h
	n := max(1, runtime.NumCPU()-1)
	h.mu.Lock()
	var to []*workerProc
	for pw := range h.pool.Workers() {
		w := procOf(pw)
		if len(to) == n {
			break
		}
		if w == nil || w.dead || w.task != nil || w.actor != nil || w.foreign != nil || w.moduleScoreLocked(digest) != scoreNone {
			continue
		}
		to = append(to, w)
	}
	h.mu.Unlock()
	for _, w := range to {
		w.load(digest, path)
	}
}

// registerModule stores wasm, checks it with a worker and names it (see
// modules.Registry.Register).
func (ad *admission) registerModule(ctx context.Context, wasm []byte, name string, replace bool) (*module, error) {
	h := ad.o
	mod, err := h.mods.Register(ctx, wasm, name, replace)
	return mod, hostError(err)
}

// lookupModule finds a module by digest or name.
func (ad *admission) lookupModule(ctx context.Context, ref string) (*module, error) {
	h := ad.o
	mod, err := h.mods.Lookup(ctx, ref)
	return mod, hostError(err)
}

// prepare checks a call against its module and fills in t's resources and
// resolved grants.
func (ad *admission) prepare(t *task, r abi.Resources) error {
	h := ad.o
	p, err := h.policy.Prepare(modules.Call{Module: t.mod, Function: t.function, NumArgs: len(t.args),
		Resources: r, Limits: t.limits, Grants: t.grants})
	if err != nil {
		return hostError(err)
	}
	t.req, t.grants = p.Resources, p.Grants
	return nil
}

// checkGrants checks grants against AllowedDirs and resolves their mounts
// (see modules.Policy.CheckGrants).
func (ad *admission) checkGrants(g abi.Grants) (abi.Grants, error) {
	h := ad.o
	out, err := h.policy.CheckGrants(g)
	return out, hostError(err)
}

// attenuate checks that a task submitted by parent asks for no more than
// parent holds; an actor's method holds its actor's grants.
func (ad *admission) attenuate(parent *task, g abi.Grants) error {
	held := parent.grants
	if parent.kind == abi.KindActorCall && parent.actor != nil && parent.actor.create != nil {
		held = parent.actor.create.grants // a method runs in its actor's instance
	}
	return hostError(modules.Attenuate(held, g))
}

// hostKinds pairs package modules' sentinels with the host's.
var hostKinds = []struct{ mod, host error }{
	{modules.ErrInvalidModule, ErrInvalidModule},
	{modules.ErrModuleNotFound, ErrModuleNotFound},
	{modules.ErrModuleExists, ErrModuleExists},
	{modules.ErrFunctionNotFound, ErrFunctionNotFound},
	{modules.ErrInvalidArgument, ErrInvalidArgument},
	{modules.ErrPermissionDenied, ErrPermissionDenied},
	{modules.ErrLimit, errLimit},
}

// hostError makes an error of package modules match the host's sentinel of
// its kind too (errors.Is), keeping its message.
func hostError(err error) error {
	if err == nil {
		return nil
	}
	for _, k := range hostKinds {
		if errors.Is(err, k.mod) {
			return &kindError{err: err, kind: k.host}
		}
	}
	return err
}

type kindError struct{ err, kind error }

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.err, e.kind} }
