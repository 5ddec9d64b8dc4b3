package modules

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// PolicyConfig is what a Policy needs of the host's configuration.
type PolicyConfig struct {
	// AllowedDirs are the clean absolute host directories (and what is
	// below them) that calls may mount.
	AllowedDirs []string
	// MaxTaskMemoryLimit caps the memory limit a call may ask for, in
	// bytes (4 GiB when 0).
	MaxTaskMemoryLimit int64
	// MaxTaskTimeout caps the timeout a call may ask for (0: no cap).
	MaxTaskTimeout time.Duration
}

// Policy checks calls against their modules and the host's limits and
// grants. It holds no state but its configuration: safe for concurrent use.
type Policy struct {
	cfg PolicyConfig
}

// NewPolicy returns the policy of cfg.
func NewPolicy(cfg PolicyConfig) (*Policy, error) {
	if cfg.MaxTaskMemoryLimit < 0 || cfg.MaxTaskMemoryLimit > 4<<30 || cfg.MaxTaskTimeout < 0 {
		return nil, fmt.Errorf("%w: MaxTaskMemoryLimit must be in 0..4 GiB and MaxTaskTimeout >= 0", ErrInvalidConfig)
	}
	if cfg.MaxTaskMemoryLimit == 0 {
		cfg.MaxTaskMemoryLimit = 4 << 30
	}
	cfg.AllowedDirs = slices.Clone(cfg.AllowedDirs)
	for _, d := range cfg.AllowedDirs {
		if !filepath.IsAbs(d) || filepath.Clean(d) != d {
			return nil, fmt.Errorf("%w: allowed directory %q is not clean and absolute", ErrInvalidConfig, d)
		}
	}
	return &Policy{cfg: cfg}, nil
}

// Call is a call to check: a function of a module with its arguments'
// count, and what it asks for.
type Call struct {
	Module    *Module
	Function  string
	NumArgs   int
	Resources abi.Resources // CPUs -1: the default, 1
	Limits    abi.Limits
	Grants    abi.Grants
}

// Prepared is what Prepare makes of a call.
type Prepared struct {
	// Resources is the call's demand on the scheduler.
	Resources scheduler.Resources
	// Grants are the call's grants with each mount's host path resolved
	// (see CheckGrants).
	Grants abi.Grants
}

// Prepare checks a call against its module (the function exists, with
// that many arguments) and the host's limits and grants, and returns what
// it runs with.
func (p *Policy) Prepare(c Call) (Prepared, error) {
	var out Prepared
	f, ok := c.Module.Funcs[c.Function]
	if !ok {
		return out, fmt.Errorf("%w: %q in module %s", ErrFunctionNotFound, c.Function, c.Module.Digest[:12])
	}
	if f.NumArgs >= 0 && c.NumArgs != f.NumArgs {
		return out, fmt.Errorf("%w: %s takes %d arguments, got %d", ErrInvalidArgument, c.Function, f.NumArgs, c.NumArgs)
	}
	r := c.Resources
	if r.CPUs == -1 {
		r.CPUs = 1
	}
	if !abi.ValidCPUs(r.CPUs) {
		return out, fmt.Errorf("%w: num_cpus %v", ErrInvalidArgument, r.CPUs)
	}
	custom := make(map[string]float64, len(r.Custom))
	for _, c := range r.Custom {
		custom[c.Name] = c.Amount
	}
	req, err := scheduler.Make(r.CPUs, r.GPUs, custom)
	if err != nil {
		return out, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	if c.Limits.MemoryPages > 65536 || c.Limits.TimeoutNs < 0 {
		return out, fmt.Errorf("%w: memory limit over 4 GiB or negative timeout", ErrInvalidArgument)
	}
	if err := p.CheckCaps(c.Limits); err != nil {
		return out, err
	}
	g, err := p.CheckGrants(c.Grants)
	if err != nil {
		return out, err
	}
	return Prepared{Resources: req, Grants: g}, nil
}

// CheckGrants allows only directories within the host's AllowedDirs, at
// absolute guest paths, and well-formed environment variables. Each mount's
// host path is replaced by its real path (symbolic links resolved), so the
// worker opens exactly the directory that was checked. On an error it
// returns g unchanged.
func (p *Policy) CheckGrants(g abi.Grants) (abi.Grants, error) {
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
		for _, root := range p.cfg.AllowedDirs {
			if Within(real, root) {
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

// Within reports whether path is dir or below it (both clean and
// absolute).
func Within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, string(filepath.Separator))+string(filepath.Separator))
}

// Attenuate checks that a task asks for no more than held, the grants of
// the task that submits it (capability attenuation): each mount within one
// of held's mounts (the same directory or below it), read-only if that one
// is; each environment variable one held has, with the same value. Both
// were checked and resolved by CheckGrants.
func Attenuate(held, g abi.Grants) error {
	for _, m := range g.Mounts {
		ok := false
		for _, pm := range held.Mounts {
			if Within(m.Host, pm.Host) && (m.ReadOnly || !pm.ReadOnly) {
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

// CheckCaps refuses limits above the host's maximums: a call's own memory
// limit or timeout only chooses within them.
func (p *Policy) CheckCaps(l abi.Limits) error {
	if mem := int64(l.MemoryPages) << 16; mem > p.cfg.MaxTaskMemoryLimit {
		return fmt.Errorf("%w: a memory limit of %d MiB is above this host's maximum of %d MiB (rayhost start --max-task-memory-mib raises it)",
			ErrLimit, mem>>20, p.cfg.MaxTaskMemoryLimit>>20)
	}
	if maxT := p.cfg.MaxTaskTimeout; maxT > 0 && time.Duration(l.TimeoutNs) > maxT {
		return fmt.Errorf("%w: a timeout of %v is above this host's maximum of %v (rayhost start --max-task-timeout raises it)",
			ErrLimit, time.Duration(l.TimeoutNs), maxT)
	}
	return nil
}
