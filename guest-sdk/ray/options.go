package ray

import (
	"maps"
	"math"

	"github.com/rayhost/rayhost/internal/abi"
)

// Option sets how a remote function's calls run: at registration
// (ray.Func1(name, fn, opts...)) or per call (f.Options(opts...).Remote(…)).
type Option func(*options)

type options struct {
	cpus, gpus float64
	hasCPUs    bool
	custom     map[string]float64
}

func (o options) with(opts []Option) options {
	if o.custom != nil {
		o.custom = maps.Clone(o.custom)
	}
	for _, f := range opts {
		f(&o)
	}
	return o
}

func (o options) resources() abi.Resources {
	r := abi.Resources{CPUs: -1, GPUs: o.gpus}
	if o.hasCPUs {
		r.CPUs = o.cpus
	}
	for name, amount := range o.custom {
		r.Custom = append(r.Custom, abi.Custom{Name: name, Amount: amount})
	}
	return r
}

// NumCPUs sets the CPUs a call needs while it runs (default 1; 0 is allowed).
func NumCPUs(n float64) Option {
	return func(o *options) { o.cpus, o.hasCPUs = n, true }
}

// NumGPUs sets the GPUs a call needs (default 0).
func NumGPUs(n float64) Option {
	return func(o *options) { o.gpus = n }
}

// Resources sets amounts of custom resources a call needs.
func Resources(r map[string]float64) Option {
	return func(o *options) {
		if o.custom == nil {
			o.custom = map[string]float64{}
		}
		maps.Copy(o.custom, r)
	}
}

func validResources(r abi.Resources) bool {
	ok := func(x float64) bool { return x >= 0 && !math.IsInf(x, 0) && !math.IsNaN(x) }
	if !abi.ValidCPUs(r.CPUs) || !ok(r.GPUs) {
		return false
	}
	for _, c := range r.Custom {
		if c.Name == "" || !ok(c.Amount) {
			return false
		}
	}
	return true
}
