package ray

import "github.com/rayhost/rayhost/internal/abi"

// Actor lifetime. An actor fate-shares with its owner, as in Ray: the task
// attempt, actor or driver that created it references it until it ends, and
// every copy of its handle counts as a reference too — passed to a task (for
// as long as the task runs), held by a task or actor that received it, or
// stored inside an object (for as long as the object lives). Once the owner
// has ended and no handle is referenced anywhere, the host kills the actor
// (no restart) and frees its name; calls then fail with ErrActorDied. A
// method call keeps its actor alive until it has run, so a task may return
// the ref of a call on an actor it created.
//
// The copies of a handle share one count, given back (batched, with the
// next host call) once none of them is reachable, as for an ObjectRef; so a
// driver that makes actors in a loop and drops their handles does not keep
// them all. Only handles the host gave out count: an ActorHandle built from
// an actor's ID by other means keeps nothing alive and cannot Kill the
// actor.
//
//	// Lives until killed (or the cluster ends), found later by name:
//	c := counterClass.Options(ray.Name("registry"), ray.Detached()).Remote()

// Detached makes an actor outlive its owner (Ray's lifetime="detached"): it
// lives until it is killed or its host ends, whoever references it. A host
// caps how many detached actors it keeps alive at once (MaxWorkers); a
// creation beyond that fails with ErrLimit. It only applies to actor
// classes; a function's calls ignore it.
func Detached() Option { return func(o *options) { o.detached = true } }

// MaxConcurrency asks for up to n calls of one actor at once (Ray's
// max_concurrency, "threaded actors"), so that a call blocked in Get, Wait
// or on a channel does not hold up the others. n must be 1 (the default:
// one call at a time, in submission order) to 1024.
//
// With n > 1, calls start in submission order but may end in any order;
// each runs on a goroutine of the actor's one instance, sharing its state
// (guard it as for any goroutines), and its context ends when the call is
// cancelled. A goroutine a method starts itself acts for the first call
// the instance was entered with (as Remote and Put in local mode's own
// goroutines). An actor that lives on another host than its owner runs
// its calls one at a time (guest-sdk/ABI.md §5, "Concurrent actors").
func MaxConcurrency(n int) Option {
	return func(o *options) {
		if n < 1 || n > abi.MaxConcurrency {
			o.invalid("MaxConcurrency(%d): use 1 to %d", n, abi.MaxConcurrency)
			return
		}
		o.maxConcurrency = uint32(n)
		if n == 1 {
			o.maxConcurrency = 0
		}
	}
}
