package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// module is a registered Wasm module: its bytes live in a file named by
// their sha256, so workers can load it and a restarted host still has it.
type module struct {
	digest string
	desc   abi.Description
	funcs  map[string]abi.FunctionInfo
}

type modules struct {
	dir string

	mu       sync.Mutex
	byDigest map[string]*module
	byName   map[string]string
	loading  map[string]*sync.Mutex // one describe per digest at a time

	// describing bounds the modules being described (compiled) at once:
	// each takes a worker for up to CompileTimeout.
	describeOnce sync.Once
	describing   chan struct{}
}

func newModules(dir string) (*modules, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("host: module directory: %w", err)
	}
	return &modules{dir: dir, byDigest: map[string]*module{}, byName: map[string]string{}, loading: map[string]*sync.Mutex{}}, nil
}

func (m *modules) path(mod *module) string { return m.pathOf(mod.digest) }

func (m *modules) pathOf(digest string) string { return filepath.Join(m.dir, digest+".wasm") }

// warm lists the module files workers should compile when they start.
func (m *modules) warm() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.byDigest))
	for d := range m.byDigest {
		out = append(out, m.pathOf(d))
	}
	return out
}

var (
	digestRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
)

var wasmMagic = []byte{0, 'a', 's', 'm', 1, 0, 0, 0}

// register stores wasm, checks it with a worker and names it. A name that
// names another module is re-pointed only if replace. A module the worker
// refuses leaves no file behind.
func (h *Host) registerModule(ctx context.Context, wasm []byte, name string, replace bool) (*module, error) {
	if !bytes.HasPrefix(wasm, wasmMagic) {
		return nil, fmt.Errorf("%w: not a WebAssembly binary (no \\0asm version 1 header)", ErrInvalidModule)
	}
	if len(wasm) > h.cfg.MaxModuleBytes {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrInvalidModule, len(wasm), h.cfg.MaxModuleBytes)
	}
	if name != "" && !nameRE.MatchString(name) {
		return nil, fmt.Errorf("%w: module name %q: use letters, digits, '.', '_' and '-'", ErrInvalidArgument, name)
	}
	if err := h.checkModuleShape(wasm); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(wasm)
	digest := hex.EncodeToString(sum[:])
	if name != "" && !replace {
		h.mods.mu.Lock()
		old, taken := h.mods.byName[name]
		h.mods.mu.Unlock()
		if taken && old != digest {
			return nil, fmt.Errorf("%w: %q names module %s; register with replace (client.Replace()) to re-point it", ErrModuleExists, name, old[:12])
		}
	}
	if err := h.checkModuleCount(digest); err != nil {
		return nil, err
	}
	path := h.mods.pathOf(digest)
	created := false
	if _, err := os.Stat(path); err != nil {
		created = true
		tmp, err := os.CreateTemp(h.mods.dir, ".upload-*")
		if err != nil {
			return nil, fmt.Errorf("host: storing module: %w", err)
		}
		_, werr := tmp.Write(wasm)
		cerr := tmp.Close()
		if err := errors.Join(werr, cerr); err != nil {
			os.Remove(tmp.Name())
			return nil, fmt.Errorf("host: storing module: %w", err)
		}
		if err := os.Rename(tmp.Name(), path); err != nil {
			os.Remove(tmp.Name())
			return nil, fmt.Errorf("host: storing module: %w", err)
		}
	}
	mod, err := h.loadModule(ctx, digest)
	if err != nil {
		if created && errors.Is(err, ErrInvalidModule) {
			h.mods.mu.Lock()
			if h.mods.byDigest[digest] == nil {
				_ = os.Remove(path) // refused: keep no file of it
			}
			h.mods.mu.Unlock()
		}
		return nil, err
	}
	if name != "" {
		h.mods.mu.Lock()
		old, taken := h.mods.byName[name]
		if taken && old != digest && !replace {
			h.mods.mu.Unlock() // named meanwhile by a concurrent registration
			return nil, fmt.Errorf("%w: %q names module %s; register with replace (client.Replace()) to re-point it", ErrModuleExists, name, old[:12])
		}
		h.mods.byName[name] = digest
		h.mods.mu.Unlock()
		if taken && old != digest {
			h.log.Info("module name re-pointed", "name", name, "from", old, "to", digest)
		}
	}
	return mod, nil
}

// checkModuleCount refuses a new distinct module past MaxModules.
func (h *Host) checkModuleCount(digest string) error {
	if h.cfg.MaxModules == 0 {
		return nil
	}
	h.mods.mu.Lock()
	defer h.mods.mu.Unlock()
	if h.mods.byDigest[digest] != nil || len(h.mods.byDigest) < h.cfg.MaxModules {
		return nil
	}
	return fmt.Errorf("%w: the host keeps %d modules, its maximum (rayhost start --max-modules raises it)", errLimit, len(h.mods.byDigest))
}

// checkModuleShape reads a module's section headers and refuses, before
// any compiling, one with more functions than MaxModuleFunctions or a
// function body over MaxFunctionBodyBytes: compile time and memory grow
// with both.
func (h *Host) checkModuleShape(wasm []byte) error {
	funcs, largest, err := wasmShape(wasm)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	if m := h.cfg.MaxModuleFunctions; m > 0 && funcs > m {
		return fmt.Errorf("%w: %d functions, the limit is %d (rayhost start --max-module-functions)", ErrInvalidModule, funcs, m)
	}
	if m := h.cfg.MaxFunctionBodyBytes; m > 0 && largest > m {
		return fmt.Errorf("%w: a function body of %d bytes, the limit is %d (rayhost start --max-function-body-bytes)", ErrInvalidModule, largest, m)
	}
	return nil
}

// wasmShape walks the sections of a Wasm binary (after the 8-byte header)
// and returns the number of functions it defines and imports, and the size
// of its largest function body.
func wasmShape(wasm []byte) (funcs, largest int, err error) {
	p := wasm[len(wasmMagic):]
	uleb := func() (uint64, error) {
		var v uint64
		for shift := 0; shift < 35; shift += 7 {
			if len(p) == 0 {
				return 0, errors.New("truncated")
			}
			b := p[0]
			p = p[1:]
			v |= uint64(b&0x7f) << shift
			if b&0x80 == 0 {
				return v, nil
			}
		}
		return 0, errors.New("bad LEB128 number")
	}
	for len(p) > 0 {
		id := p[0]
		p = p[1:]
		size, err := uleb()
		if err != nil || size > uint64(len(p)) {
			return 0, 0, fmt.Errorf("section %d: size past the end of the module", id)
		}
		body, rest := p[:size], p[size:]
		switch id {
		case 3: // function section: the defined functions' types
			p = body
			n, err := uleb()
			if err != nil {
				return 0, 0, fmt.Errorf("function section: %v", err)
			}
			funcs += int(n)
		case 2: // imports: count the imported functions too
			p = body
			n, err := uleb()
			if err != nil {
				return 0, 0, fmt.Errorf("import section: %v", err)
			}
			for range n {
				for range 2 { // module and field names
					l, err := uleb()
					if err != nil || l > uint64(len(p)) {
						return 0, 0, errors.New("import section: bad name")
					}
					p = p[l:]
				}
				if len(p) == 0 {
					return 0, 0, errors.New("import section: truncated")
				}
				kind := p[0]
				p = p[1:]
				switch kind {
				case 0: // func: type index
					funcs++
					_, err = uleb()
				case 1: // table: reftype, limits
					if len(p) == 0 {
						return 0, 0, errors.New("import section: truncated")
					}
					p = p[1:]
					err = skipLimits(&p, uleb)
				case 2: // memory: limits
					err = skipLimits(&p, uleb)
				case 3: // global: valtype, mutability
					if len(p) < 2 {
						return 0, 0, errors.New("import section: truncated")
					}
					p = p[2:]
				default:
					return 0, 0, fmt.Errorf("import section: unknown kind %d", kind)
				}
				if err != nil {
					return 0, 0, fmt.Errorf("import section: %v", err)
				}
			}
		case 10: // code section: one body per defined function
			p = body
			n, err := uleb()
			if err != nil {
				return 0, 0, fmt.Errorf("code section: %v", err)
			}
			for range n {
				l, err := uleb()
				if err != nil || l > uint64(len(p)) {
					return 0, 0, errors.New("code section: body past the end")
				}
				largest = max(largest, int(l))
				p = p[l:]
			}
		}
		p = rest
	}
	return funcs, largest, nil
}

func skipLimits(p *[]byte, uleb func() (uint64, error)) error {
	if len(*p) == 0 {
		return errors.New("truncated limits")
	}
	flags := (*p)[0]
	*p = (*p)[1:]
	if _, err := uleb(); err != nil {
		return err
	}
	if flags&1 != 0 {
		_, err := uleb()
		return err
	}
	return nil
}

// lookupModule finds a module by digest or name. A digest whose file is on
// disk (from before a restart) is described again on first use.
func (h *Host) lookupModule(ctx context.Context, ref string) (*module, error) {
	h.mods.mu.Lock()
	if d, ok := h.mods.byName[ref]; ok {
		ref = d
	}
	mod := h.mods.byDigest[ref]
	h.mods.mu.Unlock()
	if mod != nil {
		return mod, nil
	}
	if !digestRE.MatchString(ref) {
		return nil, fmt.Errorf("%w: %q", ErrModuleNotFound, ref)
	}
	if _, err := os.Stat(h.mods.pathOf(ref)); err != nil {
		return nil, fmt.Errorf("%w: %q", ErrModuleNotFound, ref)
	}
	return h.loadModule(ctx, ref)
}

// loadModule asks a worker to describe the module (which also compiles it
// into the shared cache) and records its functions.
func (h *Host) loadModule(ctx context.Context, digest string) (*module, error) {
	h.mods.mu.Lock()
	if mod := h.mods.byDigest[digest]; mod != nil {
		h.mods.mu.Unlock()
		return mod, nil
	}
	lk := h.mods.loading[digest]
	if lk == nil {
		lk = &sync.Mutex{}
		h.mods.loading[digest] = lk
	}
	h.mods.mu.Unlock()
	lk.Lock()
	defer lk.Unlock()
	h.mods.mu.Lock()
	mod := h.mods.byDigest[digest]
	h.mods.mu.Unlock()
	if mod != nil {
		return mod, nil
	}

	// At most max(2, NumCPUs) modules compile at once, so uploads of slow
	// modules cannot take every worker.
	h.mods.describeOnce.Do(func() { h.mods.describing = make(chan struct{}, max(2, int(h.cfg.NumCPUs))) })
	select {
	case h.mods.describing <- struct{}{}:
		defer func() { <-h.mods.describing }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	mod = &module{digest: digest}
	// Describing compiles the module: under CompileTimeout, past which the
	// worker compiling it is killed.
	t := &task{id: ids.NewTaskID(), mod: mod, kind: abi.KindDescribe, numReturns: 1, req: scheduler.Resources{}, maxRetries: 1,
		limits: abi.Limits{TimeoutNs: int64(h.cfg.CompileTimeout)}}
	h.submit(ctx, t)
	vals, err := h.objs.Get(ctx, t.returns(), -1, nil)
	if err != nil {
		return nil, err
	}
	if vals[0].Codec == abi.CodecError {
		te := abi.DecodeTaskError(vals[0].Data)
		if te.Kind == abi.ErrorTimeout && h.cfg.CompileTimeout > 0 {
			return nil, fmt.Errorf("%w: compiling it took longer than %v, the limit (rayhost start --compile-timeout): %s", ErrInvalidModule, h.cfg.CompileTimeout, te.Message)
		}
		return nil, fmt.Errorf("%w: %s", ErrInvalidModule, te.Message)
	}
	if err := json.Unmarshal(vals[0].Data, &mod.desc); err != nil {
		return nil, fmt.Errorf("%w: undecodable description: %v", ErrInvalidModule, err)
	}
	if mod.desc.Error != "" {
		return nil, fmt.Errorf("%w: %s", ErrInvalidModule, mod.desc.Error)
	}
	mod.funcs = make(map[string]abi.FunctionInfo, len(mod.desc.Functions))
	for _, f := range mod.desc.Functions {
		mod.funcs[f.Name] = f
	}
	h.mods.mu.Lock()
	h.mods.byDigest[digest] = mod
	delete(h.mods.loading, digest)
	h.mods.mu.Unlock()

	// Compile it in every worker now, so its first task does not wait.
	h.mu.Lock()
	ws := make([]*workerProc, 0, len(h.workers))
	for w := range h.workers {
		ws = append(ws, w)
	}
	h.mu.Unlock()
	for _, w := range ws {
		w.load(h.mods.path(mod))
	}
	return mod, nil
}

// prepare checks a call against its module and fills in t's resources.
func (h *Host) prepare(t *task, r abi.Resources) error {
	f, ok := t.mod.funcs[t.function]
	if !ok {
		return fmt.Errorf("%w: %q in module %s", ErrFunctionNotFound, t.function, t.mod.digest[:12])
	}
	if f.NumArgs >= 0 && len(t.args) != f.NumArgs {
		return fmt.Errorf("%w: %s takes %d arguments, got %d", ErrInvalidArgument, t.function, f.NumArgs, len(t.args))
	}
	if r.CPUs == -1 {
		r.CPUs = 1
	}
	if !abi.ValidCPUs(r.CPUs) {
		return fmt.Errorf("%w: num_cpus %v", ErrInvalidArgument, r.CPUs)
	}
	custom := make(map[string]float64, len(r.Custom))
	for _, c := range r.Custom {
		custom[c.Name] = c.Amount
	}
	req, err := scheduler.Make(r.CPUs, r.GPUs, custom)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	t.req = req
	if t.limits.MemoryPages > 65536 || t.limits.TimeoutNs < 0 {
		return fmt.Errorf("%w: memory limit over 4 GiB or negative timeout", ErrInvalidArgument)
	}
	if err := h.checkCaps(t.limits); err != nil {
		return err
	}
	t.grants, err = h.checkGrants(t.grants)
	return err
}

// checkGrants allows only directories within the host's AllowedDirs, at
// absolute guest paths, and well-formed environment variables. Each mount's
// host path is replaced by its real path (symbolic links resolved), so the
// worker opens exactly the directory that was checked.
func (h *Host) checkGrants(g abi.Grants) (abi.Grants, error) {
	out := abi.Grants{Env: slices.Clone(g.Env)}
	for _, m := range g.Mounts {
		if !filepath.IsAbs(m.Host) || !strings.HasPrefix(m.Guest, "/") {
			return g, fmt.Errorf("%w: mount %q at %q: both paths must be absolute", ErrPermissionDenied, m.Host, m.Guest)
		}
		real, err := filepath.EvalSymlinks(filepath.Clean(m.Host))
		if err != nil {
			return g, fmt.Errorf("%w: mount %q: %v", ErrPermissionDenied, m.Host, err)
		}
		allowed := false
		for _, root := range h.cfg.AllowedDirs {
			if within(real, root) {
				allowed = true
				break
			}
		}
		if !allowed {
			return g, fmt.Errorf("%w: mount %q: not within a directory the host allows (rayhost start --allow-dir)", ErrPermissionDenied, m.Host)
		}
		m.Host = real
		out.Mounts = append(out.Mounts, m)
	}
	for _, kv := range g.Env {
		if kv.Name == "" || strings.ContainsAny(kv.Name, "=\x00") || strings.ContainsRune(kv.Value, 0) {
			return g, fmt.Errorf("%w: environment variable %q", ErrInvalidArgument, kv.Name)
		}
	}
	return out, nil
}

// within reports whether path is dir or below it (both clean and absolute).
func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, string(filepath.Separator))+string(filepath.Separator))
}

// attenuate checks that a task submitted by parent asks for no more than
// parent holds (capability attenuation): each mount within one of the
// parent's mounts (the same directory or below it), read-only if that one
// is; each environment variable one the parent has, with the same value.
// The grants were already checked and resolved by checkGrants.
func (h *Host) attenuate(parent *task, g abi.Grants) error {
	held := parent.grants
	if parent.kind == abi.KindActorCall && parent.actor != nil && parent.actor.create != nil {
		held = parent.actor.create.grants // a method runs in its actor's instance
	}
	for _, m := range g.Mounts {
		ok := false
		for _, pm := range held.Mounts {
			if within(m.Host, pm.Host) && (m.ReadOnly || !pm.ReadOnly) {
				ok = true
				break
			}
		}
		if !ok {
			mode := "read-write"
			if m.ReadOnly {
				mode = "read-only"
			}
			return fmt.Errorf("%w: mount %q (%s): the submitting task holds no grant that covers it; a child's grants must be a subset of its parent's", ErrPermissionDenied, m.Host, mode)
		}
	}
	for _, kv := range g.Env {
		if !slices.Contains(held.Env, kv) {
			return fmt.Errorf("%w: environment variable %q: the submitting task does not hold it with that value; a child's grants must be a subset of its parent's", ErrPermissionDenied, kv.Name)
		}
	}
	return nil
}

// checkCaps refuses limits above the host's maximums: a call's own memory
// limit or timeout only chooses within them.
func (h *Host) checkCaps(l abi.Limits) error {
	if mem := int64(l.MemoryPages) << 16; mem > h.cfg.MaxTaskMemoryLimit {
		return fmt.Errorf("%w: a memory limit of %d MiB is above this host's maximum of %d MiB (rayhost start --max-task-memory-mib raises it)",
			errLimit, mem>>20, h.cfg.MaxTaskMemoryLimit>>20)
	}
	if maxT := h.cfg.MaxTaskTimeout; maxT > 0 && time.Duration(l.TimeoutNs) > maxT {
		return fmt.Errorf("%w: a timeout of %v is above this host's maximum of %v (rayhost start --max-task-timeout raises it)",
			errLimit, time.Duration(l.TimeoutNs), maxT)
	}
	return nil
}
