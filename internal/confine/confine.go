// Package confine confines a worker process with what the kernel offers:
// an empty environment, no_new_privs, no capabilities, a seccomp filter,
// rlimits, Landlock and a network namespace without interfaces. Each layer
// is probed and reported (Layer), so the host can say which are in force
// and why the others are not. A missing layer is not an error: Apply does
// what it can and reports the rest.
package confine

import (
	"fmt"
	"os"
)

// Layer names, in the order Apply reports them.
const (
	LayerEnvironment  = "environment"
	LayerNoNewPrivs   = "no_new_privs"
	LayerCapabilities = "capabilities"
	LayerUserNS       = "user_namespace"
	LayerNetwork      = "network_namespace"
	LayerRlimits      = "rlimits"
	LayerLandlock     = "landlock"
	LayerSeccomp      = "seccomp"
)

// Layer is one confinement layer of a worker: whether it is in force, and
// what it does or why it is missing.
type Layer struct {
	Name   string `json:"name"`
	Active bool   `json:"active"`
	Detail string `json:"detail"`
}

// Options say what a worker may touch.
type Options struct {
	// ReadDirs may be read (the modules directory).
	ReadDirs []string
	// WriteDirs may be read and written (the compilation cache, the host's
	// allowed directories, which tasks are granted per task).
	WriteDirs []string
}

// Off reports every layer but the environment as off, with why, for a
// worker started with confinement turned off.
func Off(why string) []Layer {
	names := []string{LayerEnvironment, LayerNoNewPrivs, LayerCapabilities, LayerUserNS, LayerNetwork, LayerRlimits, LayerLandlock, LayerSeccomp}
	out := make([]Layer, len(names))
	for i, n := range names {
		out[i] = Layer{Name: n, Detail: why}
	}
	out[0] = envLayer() // the host never passes its environment
	return out
}

// envLayer: the host starts workers with an empty environment, so neither
// its token nor anything else of its environment reaches a guest.
func envLayer() Layer {
	if n := len(os.Environ()); n > 0 {
		return Layer{Name: LayerEnvironment, Detail: fmt.Sprintf("the worker has %d environment variables", n)}
	}
	return Layer{Name: LayerEnvironment, Active: true, Detail: "empty"}
}
