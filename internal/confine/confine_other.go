//go:build !linux

package confine

import "runtime"

// Apply confines nothing but the environment here: the other layers are
// Linux features.
func Apply(opts Options) []Layer {
	out := Off("not available on GOOS=" + runtime.GOOS)
	out[0] = envLayer()
	return out
}
