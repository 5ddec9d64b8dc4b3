package ray

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
)

// Option sets how a remote function's calls run: at registration
// (ray.Func1(name, fn, opts...)) or per call (f.Options(opts...).Remote(…)).
type Option func(*options)

type options struct {
	cpus, gpus   float64
	hasCPUs      bool
	custom       map[string]float64
	maxRetries   int32
	hasRetries   bool
	retry        abi.RetryMode
	retryOn      []string
	noEvents     bool
	backpressure uint32
	limits       abi.Limits
	grants       abi.Grants
	scheduling   abi.Scheduling
	// actors
	name, namespace             string
	maxRestarts, maxTaskRetries int32
	detached                    bool   // lifetime.go
	maxConcurrency              uint32 // lifetime.go
	// err is the first invalid option (a negative retry count other than
	// -1…): calls with it fail at Remote, as Ray's options raise.
	err error
}

// invalid records the first invalid option.
func (o *options) invalid(format string, args ...any) {
	if o.err == nil {
		o.err = fmt.Errorf("%w: "+format, append([]any{ErrBadArgument}, args...)...)
	}
}

// count checks a retry or restart count: -1 (no limit), 0 or more.
func (o *options) count(opt string, n int) int32 {
	if n < -1 {
		o.invalid("%s(%d): use -1 (no limit), 0 or more", opt, n)
	}
	return int32(min(max(n, -1), maxRetriesLimit))
}

func (o options) with(opts []Option) options {
	if o.custom != nil {
		o.custom = maps.Clone(o.custom)
	}
	o.grants.Mounts = slices.Clone(o.grants.Mounts)
	o.grants.Env = slices.Clone(o.grants.Env)
	for _, f := range opts {
		f(&o)
	}
	return o
}

// call returns the options as they travel.
func (o options) call() abi.CallOptions {
	c := abi.CallOptions{Resources: o.resources(), MaxRetries: 3, Retry: o.retry, RetryOn: o.retryOn,
		Backpressure: o.backpressure, NoEvents: o.noEvents, Limits: o.limits, Grants: o.grants, Scheduling: o.scheduling}
	if o.hasRetries {
		c.MaxRetries = o.maxRetries
	}
	return c
}

// apply copies the options into a submission.
func (o options) apply(req *abi.SubmitRequest) {
	c := o.call()
	req.Resources, req.MaxRetries, req.Retry, req.RetryOn = c.Resources, c.MaxRetries, c.Retry, c.RetryOn
	req.NoEvents, req.Backpressure = c.NoEvents, c.Backpressure
	req.Limits, req.Grants, req.Scheduling = c.Limits, c.Grants, c.Scheduling
	req.Name, req.Namespace, req.MaxRestarts, req.MaxTaskRetries = o.name, o.namespace, o.maxRestarts, o.maxTaskRetries
	if req.Kind == abi.KindActorCreate {
		req.Detached, req.MaxConcurrency = o.detached, o.maxConcurrency
	}
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

// Spread places calls on the least loaded hosts of the cluster instead of
// packing them onto the submitting one (Ray's scheduling_strategy="SPREAD").
func Spread() Option {
	return func(o *options) { o.scheduling = abi.Scheduling{Spread: true} }
}

// NodeAffinity runs calls on the host named nodeID (its id, as `rayhost
// status` lists it), waiting while that host is busy. With soft, a call
// runs elsewhere when that host is gone, unreachable or can never fit it;
// without, it fails as infeasible if the host is not in the cluster (Ray's
// NodeAffinitySchedulingStrategy).
func NodeAffinity(nodeID string, soft bool) Option {
	return func(o *options) { o.scheduling = abi.Scheduling{NodeID: nodeID, Soft: soft} }
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

// errResources says what validResources checks.
const errResources = "resources must be finite, not negative, and 0 or at least 0.0001 (the precision of resource amounts, as in Ray)"

// validResources: amounts are finite, not negative (CPUs -1: the default),
// and none is finer than the host's unit of 0.0001, which would round to 0
// (Ray refuses them the same way).
func validResources(r abi.Resources) bool {
	ok := func(x float64) bool { return x >= 0 && !math.IsInf(x, 0) && !math.IsNaN(x) && (x == 0 || x >= 1e-4) }
	if !(r.CPUs == -1 || ok(r.CPUs)) || !ok(r.GPUs) {
		return false
	}
	for _, c := range r.Custom {
		if c.Name == "" || !ok(c.Amount) {
			return false
		}
	}
	return true
}

// maxRetriesLimit is the largest MaxRetries the ABI carries; more is as good
// as no limit.
const maxRetriesLimit = 1 << 30

// MaxRetries sets how often a call is retried after a system failure (its
// worker process died): -1 without limit, 0 never. The default is 3, as in
// Ray. Application errors are retried only with RetryExceptions. On an
// actor method call it bounds the retries of application errors
// RetryExceptions names (default 0, as Ray's max_task_retries); a call cut
// short by the actor's death is retried within the actor's MaxTaskRetries.
func MaxRetries(n int) Option {
	return func(o *options) { o.maxRetries, o.hasRetries = o.count("MaxRetries", n), true }
}

// RetryExceptions makes application errors retryable too (within
// MaxRetries). With no kinds, every error is retried; otherwise only errors
// whose kind ("application", "panic", "trap") or code (see WithCode) is
// listed.
func RetryExceptions(kinds ...string) Option {
	return func(o *options) {
		if len(kinds) == 0 {
			o.retry, o.retryOn = abi.RetryAll, nil
			return
		}
		o.retry, o.retryOn = abi.RetryListed, append([]string(nil), kinds...)
	}
}

// NoRetryExceptions turns RetryExceptions off again: application errors
// and panics are not retried (Ray's retry_exceptions=False, its default),
// for a function registered with RetryExceptions, say:
//
//	flaky.Options(ray.NoRetryExceptions()).Remote()
func NoRetryExceptions() Option {
	return func(o *options) { o.retry, o.retryOn = abi.RetryNone, nil }
}

// TaskEvents turns the recording of a call's state transitions on (the
// default) or off.
func TaskEvents(on bool) Option {
	return func(o *options) { o.noEvents = !on }
}

// Backpressure pauses a generator while n of its items wait unconsumed
// (Ray's _generator_backpressure_num_objects). 0 means no bound.
func Backpressure(n int) Option {
	return func(o *options) {
		if n < 0 {
			o.invalid("Backpressure(%d): use 0 (no bound) or more", n)
		}
		o.backpressure = uint32(max(n, 0))
	}
}

// MemoryLimit caps the guest memory of a call in bytes (rounded up to 64 KiB
// pages). A guest that needs more fails with an out_of_memory error. 0 uses
// the host's default.
func MemoryLimit(bytes int64) Option {
	return func(o *options) {
		if bytes < 0 {
			o.invalid("MemoryLimit(%d): use 0 (the host's default) or more", bytes)
		}
		pages := (max(bytes, 0) + 65535) / 65536
		o.limits.MemoryPages = uint32(min(pages, 65536))
	}
}

// Timeout bounds each attempt of a call in wall-clock time. Past it the
// host stops the task (its worker process is replaced) and the task fails
// with a timeout error. 0 uses the host's default.
func Timeout(d time.Duration) Option {
	return func(o *options) {
		if d < 0 {
			o.invalid("Timeout(%v): use 0 (the host's default) or more", d)
		}
		o.limits.TimeoutNs = max(int64(d), 0)
	}
}

// MountDir grants a call the host directory hostDir at guestPath, read-only
// or read-write. The host refuses directories outside the roots its
// operator allowed (rayhost start --allow-dir). By default a guest sees no
// filesystem at all.
func MountDir(hostDir, guestPath string, readOnly bool) Option {
	return func(o *options) {
		o.grants.Mounts = append(o.grants.Mounts, abi.Mount{Host: hostDir, Guest: guestPath, ReadOnly: readOnly})
	}
}

// Env grants a call environment variables (os.Getenv in the guest). By
// default a guest has none; the host's own environment is never passed.
func Env(vars map[string]string) Option {
	return func(o *options) {
		names := slices.Sorted(maps.Keys(vars))
		for _, n := range names {
			o.grants.Env = append(o.grants.Env, abi.KV{Name: n, Value: vars[n]})
		}
	}
}
