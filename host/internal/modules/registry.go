package modules

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
)

// Module is a registered Wasm module: its bytes live in a file named by
// their sha256 digest. A module only fetched to run other hosts' tasks has
// a Digest and nothing else (the owner checked the calls to it).
type Module struct {
	Digest string // sha256 of the bytes, hex
	Desc   abi.Description
	Funcs  map[string]abi.FunctionInfo // by name
}

// Compiler is what the registry needs of the host's workers.
type Compiler interface {
	// Describe runs the module's describe call in a worker, which compiles
	// it into the shared cache, within timeout (0: none), and returns the
	// call's one value: the module's abi.Description as JSON, or a
	// CodecError value (an abi.TaskError) when the worker refused it.
	Describe(ctx context.Context, mod *Module, timeout time.Duration) (abi.Value, error)
	// Warm has the running workers compile the module with digest, whose
	// file is at path, now, so that its tasks do not wait.
	Warm(digest, path string)
}

// Config is what a Registry needs of the host's configuration.
type Config struct {
	// Dir holds the module files; New creates it.
	Dir string
	// MaxModuleBytes bounds a module (64 MiB when 0).
	MaxModuleBytes int
	// MaxModules bounds the distinct modules kept (0: no bound).
	MaxModules int
	// MaxFunctions and MaxFunctionBodyBytes bound a module's function count
	// (imports included) and its largest function body (0: no bound).
	MaxFunctions, MaxFunctionBodyBytes int
	// CompileTimeout bounds describing (compiling) one module (0: none).
	CompileTimeout time.Duration
	// MaxCompiling bounds the modules described at once, each of which
	// takes a worker for up to CompileTimeout (2 when 0).
	MaxCompiling int
	// Logger gets the registry's records (slog.Default() when nil).
	Logger *slog.Logger
}

// Registry is the set of a host's modules. Its methods are safe for
// concurrent use.
type Registry struct {
	cfg      Config
	compiler Compiler
	// compiling bounds the modules being described at once.
	compiling chan struct{}

	mu       sync.Mutex
	byDigest map[string]*Module
	byName   map[string]string
	loading  map[string]*sync.Mutex // one describe per digest at a time
}

// New returns the registry of the module files in cfg.Dir (creating it),
// whose modules compiler describes. Modules already there are described on
// first use (Lookup).
func New(cfg Config, compiler Compiler) (*Registry, error) {
	switch {
	case cfg.Dir == "":
		return nil, fmt.Errorf("%w: no Dir", ErrInvalidConfig)
	case compiler == nil:
		return nil, fmt.Errorf("%w: no Compiler", ErrInvalidConfig)
	case cfg.MaxModuleBytes < 0 || cfg.MaxModules < 0 || cfg.MaxFunctions < 0 || cfg.MaxFunctionBodyBytes < 0 ||
		cfg.CompileTimeout < 0 || cfg.MaxCompiling < 0:
		return nil, fmt.Errorf("%w: negative limit", ErrInvalidConfig)
	}
	if cfg.MaxModuleBytes == 0 {
		cfg.MaxModuleBytes = 64 << 20
	}
	if cfg.MaxCompiling == 0 {
		cfg.MaxCompiling = 2
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("host: module directory: %w", err)
	}
	return &Registry{cfg: cfg, compiler: compiler, compiling: make(chan struct{}, cfg.MaxCompiling),
		byDigest: map[string]*Module{}, byName: map[string]string{}, loading: map[string]*sync.Mutex{}}, nil
}

var (
	digestRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
)

// ValidDigest reports whether s has the form of a module digest (64
// lower-case hex digits), which is safe in a file name.
func ValidDigest(s string) bool { return digestRE.MatchString(s) }

// Dir is the directory of the module files.
func (r *Registry) Dir() string { return r.cfg.Dir }

// Path is the file of the module with digest (which must be valid).
func (r *Registry) Path(digest string) string { return filepath.Join(r.cfg.Dir, digest+".wasm") }

// Known returns the described module with digest, or nil.
func (r *Registry) Known(digest string) *Module {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byDigest[digest]
}

// Warm lists the digests of the modules workers should compile when they
// start (their files are at Path).
func (r *Registry) Warm() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.byDigest))
	for d := range r.byDigest {
		out = append(out, d)
	}
	return out
}

// Register stores wasm, has it described and names it. A name that names
// another module is re-pointed only if replace. A module the compiler
// refuses leaves no file behind.
func (r *Registry) Register(ctx context.Context, wasm []byte, name string, replace bool) (*Module, error) {
	if !bytes.HasPrefix(wasm, wasmMagic) {
		return nil, fmt.Errorf("%w: not a WebAssembly binary (no \\0asm version 1 header)", ErrInvalidModule)
	}
	if len(wasm) > r.cfg.MaxModuleBytes {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrInvalidModule, len(wasm), r.cfg.MaxModuleBytes)
	}
	if name != "" && !nameRE.MatchString(name) {
		return nil, fmt.Errorf("%w: module name %q: use letters, digits, '.', '_' and '-'", ErrInvalidArgument, name)
	}
	if err := r.checkShape(wasm); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(wasm)
	digest := hex.EncodeToString(sum[:])
	if name != "" && !replace {
		r.mu.Lock()
		old, taken := r.byName[name]
		r.mu.Unlock()
		if taken && old != digest {
			return nil, fmt.Errorf("%w: %q names module %s; register with replace (client.Replace()) to re-point it", ErrModuleExists, name, old[:12])
		}
	}
	if err := r.checkCount(digest); err != nil {
		return nil, err
	}
	path := r.Path(digest)
	created := false
	if _, err := os.Stat(path); err != nil {
		created = true
		if err := r.store(path, wasm); err != nil {
			return nil, err
		}
	}
	mod, err := r.Load(ctx, digest)
	if err != nil {
		if created && errors.Is(err, ErrInvalidModule) {
			r.mu.Lock()
			if r.byDigest[digest] == nil {
				_ = os.Remove(path) // refused: keep no file of it
				_ = os.Remove(r.descPath(digest))
			}
			r.mu.Unlock()
		}
		return nil, err
	}
	if name != "" {
		r.mu.Lock()
		old, taken := r.byName[name]
		if taken && old != digest && !replace {
			r.mu.Unlock() // named meanwhile by a concurrent registration
			return nil, fmt.Errorf("%w: %q names module %s; register with replace (client.Replace()) to re-point it", ErrModuleExists, name, old[:12])
		}
		r.byName[name] = digest
		r.mu.Unlock()
		if taken && old != digest {
			r.cfg.Logger.Info("module name re-pointed", "name", name, "from", old, "to", digest)
		}
	}
	return mod, nil
}

// store writes wasm to path through a temporary file, so that path is
// either absent or whole.
func (r *Registry) store(path string, wasm []byte) error {
	tmp, err := os.CreateTemp(r.cfg.Dir, ".upload-*")
	if err != nil {
		return fmt.Errorf("host: storing module: %w", err)
	}
	_, werr := tmp.Write(wasm)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("host: storing module: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("host: storing module: %w", err)
	}
	return nil
}

// checkCount refuses a new distinct module past MaxModules.
func (r *Registry) checkCount(digest string) error {
	if r.cfg.MaxModules == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byDigest[digest] != nil || len(r.byDigest) < r.cfg.MaxModules {
		return nil
	}
	return fmt.Errorf("%w: the host keeps %d modules, its maximum (rayhost start --max-modules raises it)", ErrLimit, len(r.byDigest))
}

// Lookup finds a module by digest or name. A digest whose file is on disk
// (from before a restart, or fetched from a peer) is described on first
// use.
func (r *Registry) Lookup(ctx context.Context, ref string) (*Module, error) {
	r.mu.Lock()
	if d, ok := r.byName[ref]; ok {
		ref = d
	}
	mod := r.byDigest[ref]
	r.mu.Unlock()
	if mod != nil {
		return mod, nil
	}
	if !digestRE.MatchString(ref) {
		return nil, fmt.Errorf("%w: %q", ErrModuleNotFound, ref)
	}
	if _, err := os.Stat(r.Path(ref)); err != nil {
		return nil, fmt.Errorf("%w: %q", ErrModuleNotFound, ref)
	}
	return r.Load(ctx, ref)
}

// Load has the compiler describe the module with digest, whose file is in
// Dir (which also compiles it into the shared cache), unless its
// description was persisted (descriptions.go), records its functions and
// has every worker compile it. Concurrent loads of one digest describe it
// once.
func (r *Registry) Load(ctx context.Context, digest string) (*Module, error) {
	r.mu.Lock()
	if mod := r.byDigest[digest]; mod != nil {
		r.mu.Unlock()
		return mod, nil
	}
	lk := r.loading[digest]
	if lk == nil {
		lk = &sync.Mutex{}
		r.loading[digest] = lk
	}
	r.mu.Unlock()
	lk.Lock()
	defer lk.Unlock()
	if mod := r.Known(digest); mod != nil {
		return mod, nil
	}
	mod := &Module{Digest: digest}
	if desc, ok := r.readDescription(digest); ok {
		mod.Desc = desc // described before, by this host before a restart
	} else {
		desc, err := r.describe(ctx, mod)
		if err != nil {
			return nil, err
		}
		mod.Desc = desc
	}
	mod.Funcs = make(map[string]abi.FunctionInfo, len(mod.Desc.Functions))
	for _, f := range mod.Desc.Functions {
		mod.Funcs[f.Name] = f
	}
	r.mu.Lock()
	r.byDigest[digest] = mod
	delete(r.loading, digest)
	r.mu.Unlock()

	// Compile it in every worker now, so its first task does not wait.
	r.compiler.Warm(digest, r.Path(digest))
	return mod, nil
}

// describe has the compiler describe mod (which compiles it into the
// shared cache), checks the description and persists it.
func (r *Registry) describe(ctx context.Context, mod *Module) (abi.Description, error) {
	// At most MaxCompiling modules compile at once, so uploads of slow
	// modules cannot take every worker.
	select {
	case r.compiling <- struct{}{}:
		defer func() { <-r.compiling }()
	case <-ctx.Done():
		return abi.Description{}, ctx.Err()
	}
	// Describing compiles the module: under CompileTimeout, past which the
	// worker compiling it is killed.
	val, err := r.compiler.Describe(ctx, mod, r.cfg.CompileTimeout)
	if err != nil {
		return abi.Description{}, err
	}
	if val.Codec == abi.CodecError {
		te := abi.DecodeTaskError(val.Data)
		if te.Kind == abi.ErrorTimeout && r.cfg.CompileTimeout > 0 {
			return abi.Description{}, fmt.Errorf("%w: compiling it took longer than %v, the limit (rayhost start --compile-timeout): %s", ErrInvalidModule, r.cfg.CompileTimeout, te.Message)
		}
		return abi.Description{}, fmt.Errorf("%w: %s", ErrInvalidModule, te.Message)
	}
	desc, err := decodeDescription(val.Data)
	if err != nil {
		return abi.Description{}, err
	}
	r.writeDescription(mod.Digest, val.Data)
	return desc, nil
}
