package main

// Actor lifetime (host/internal/owner/actorlife.go): an actor dies with its
// owner unless Detached or a handle to it is held elsewhere; forged handles
// count for nothing.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

// lt_make creates a Counter (named name if name != "", detached if asked),
// counts to 1 and returns the actor's ID.
var _ = ray.Func2("lt_make", func(ctx context.Context, name string, detached bool) (string, error) {
	var opts []ray.Option
	if name != "" {
		opts = append(opts, ray.Name(name))
	}
	if detached {
		opts = append(opts, ray.Detached())
	}
	c := counterClass.Options(opts...).Remote()
	_, err := ray.Get(ctx, incr.Remote(c, 1))
	return c.ID(), err
})

// lt_return_handle creates a Counter and returns its handle inside its
// result: the result keeps the actor alive.
var _ = ray.Func0("lt_return_handle", func(ctx context.Context) (ray.ActorHandle[Counter], error) {
	c := counterClass.Remote()
	_, err := ray.Get(ctx, incr.Remote(c, 1))
	return c, err
})

// lt_use_and_kill calls the actor in holder (a handle inside a value it
// read) and then kills it: a handle it was given counts.
var _ = ray.Func1("lt_use_and_kill", func(ctx context.Context, c ray.ActorHandle[Counter]) (int, error) {
	n, err := ray.Get(ctx, incr.Remote(c, 1))
	if err != nil {
		return 0, err
	}
	return n, ray.Kill(c, true)
})

// ltLater waits, then calls the actor it was given.
var ltLater = ray.Func2("lt_later", func(ctx context.Context, c ray.ActorHandle[Counter], ms int) (int, error) {
	_ = ray.Sleep(ctx, time.Duration(ms)*time.Millisecond)
	return ray.Get(ctx, incr.Remote(c, 1))
})

// Passed is what lt_pass_on returns.
type Passed struct {
	Actor string             `json:"actor"`
	Later ray.ObjectRef[int] `json:"later"`
}

// lt_pass_on creates a Counter, gives its handle to a task that calls it
// later, and ends at once (returning that task's ref): the task's argument
// keeps the actor alive.
var _ = ray.Func1("lt_pass_on", func(ctx context.Context, ms int) (Passed, error) {
	c := counterClass.Remote()
	return Passed{Actor: c.ID(), Later: ltLater.Remote(c, ms)}, nil
})

// forge builds a handle from an actor's ID alone, as an attacker would.
func forge(id string) (ray.ActorHandle[Counter], error) {
	var c ray.ActorHandle[Counter]
	err := json.Unmarshal([]byte(`{"actor_id":"`+id+`"}`), &c)
	return c, err
}

// lt_forge_kill tries to kill the actor id through a forged handle; the
// Get after it is a round trip, so the kill has been handled on return.
var _ = ray.Func1("lt_forge_kill", func(ctx context.Context, id string) (bool, error) {
	c, err := forge(id)
	if err != nil {
		return false, err
	}
	if err := ray.Kill(c, true); err != nil {
		return false, err
	}
	_, err = ray.Get(ctx, ray.Put(1))
	return true, err
})

// Forged is what lt_forge_keep returns: a put value holding forged
// handles, and a task blocked with one as its argument.
type Forged struct {
	Box     ray.ObjectRef[[]ray.ActorHandle[Counter]] `json:"box"`
	Blocked ray.ObjectRef[int]                        `json:"blocked"`
}

// ltBlock holds its argument until it is cancelled.
var ltBlock = ray.Func1("lt_block", func(ctx context.Context, c ray.ActorHandle[Counter]) (int, error) {
	_ = ray.Sleep(ctx, time.Hour)
	return 0, ctx.Err()
})

// lt_forge_keep tries to keep the actor id alive through forged handles:
// in a value it puts (and reads back), and as the argument of a task that
// blocks. It returns both, so they outlive it.
var _ = ray.Func1("lt_forge_keep", func(ctx context.Context, id string) (Forged, error) {
	c, err := forge(id)
	if err != nil {
		return Forged{}, err
	}
	box := ray.Put([]ray.ActorHandle[Counter]{c, c})
	if _, err := ray.Get(ctx, box); err != nil {
		return Forged{}, err
	}
	return Forged{Box: box, Blocked: ltBlock.Remote(c)}, nil
})

// lt_handle_flood holds n copies of a new actor's handle — in a value it
// puts and reads back, and through n get_actor lookups — then ends: every
// count goes with it, and the actor dies.
var _ = ray.Func2("lt_handle_flood", func(ctx context.Context, name string, n int) (string, error) {
	c := counterClass.Options(ray.Name(name)).Remote()
	hs := make([]ray.ActorHandle[Counter], n)
	for i := range hs {
		hs[i] = c
	}
	back, err := ray.Get(ctx, ray.Put(hs))
	if err != nil || len(back) != n {
		return "", fmt.Errorf("reading the handles back: %d, %v", len(back), err)
	}
	for range n {
		if _, err := ray.GetActor[Counter](ctx, name, ""); err != nil {
			return "", err
		}
	}
	_, err = ray.Get(ctx, incr.Remote(c, 1))
	return c.ID(), err
})

// lt_detached_flood creates n detached Counters and returns their IDs at
// once, without waiting: the host refuses those beyond its cap.
var _ = ray.Func1("lt_detached_flood", func(ctx context.Context, n int) ([]string, error) {
	out := make([]string, n)
	for i := range out {
		out[i] = counterClass.Options(ray.Detached()).Remote().ID()
	}
	return out, nil
})

// lt_kill_named kills the actor named name (found by name: that counts).
var _ = ray.Func1("lt_kill_named", func(ctx context.Context, name string) (bool, error) {
	c, err := ray.GetActor[Counter](ctx, name, "")
	if err != nil {
		return false, err
	}
	return true, ray.Kill(c, true)
})

// lt_concurrent runs a barrier on an actor with MaxConcurrency(4) (its
// calls run at once, concurrent.go): three calls wait on a gate that a
// fourth opens. It returns "ready before open, values after open", or the
// error.
var _ = ray.Func0("lt_concurrent", func(ctx context.Context) (string, error) {
	g := gateClass.Remote()
	defer func() { _ = ray.Kill(g, true) }()
	ws := []ray.ObjectRef[bool]{gateWait.Remote(g), gateWait.Remote(g), gateWait.Remote(g)}
	ready, _, err := ray.Wait(ctx, ws, 1, 100*time.Millisecond)
	if err != nil {
		return "", err
	}
	if _, err := ray.Get(ctx, gateOpen.Remote(g)); err != nil {
		return "", err
	}
	vs, err := ray.GetAll(ctx, ws)
	return fmt.Sprintf("%d %v", len(ready), vs), err
})

// lt_concurrent_kill kills a concurrent actor while three calls wait on
// its gate, and returns how many of them failed with ErrActorDied.
var _ = ray.Func0("lt_concurrent_kill", func(ctx context.Context) (int, error) {
	g := gateClass.Remote()
	ws := []ray.ObjectRef[bool]{gateWait.Remote(g), gateWait.Remote(g), gateWait.Remote(g)}
	// The gate's state says the calls run: a call that counts waiters.
	for {
		n, err := ray.Get(ctx, gateWaiting.Remote(g))
		if err != nil {
			return 0, err
		}
		if n == len(ws) {
			break
		}
		if err := ray.Sleep(ctx, time.Millisecond); err != nil {
			return 0, err
		}
	}
	if err := ray.Kill(g, true); err != nil {
		return 0, err
	}
	died := 0
	for _, w := range ws {
		if _, err := ray.Get(ctx, w); errors.Is(err, ray.ErrActorDied) {
			died++
		}
	}
	return died, nil
})

// Gate is a one-shot barrier; waiting counts the calls blocked on it.
type Gate struct {
	ch      chan struct{}
	waiting atomic.Int32
}

var gateClass = ray.Actor0("Gate", func(ctx context.Context) (*Gate, error) {
	return &Gate{ch: make(chan struct{})}, nil
}, ray.MaxConcurrency(4))

var gateWait = ray.Method0(gateClass, "wait", func(g *Gate, ctx context.Context) (bool, error) {
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	select {
	case <-g.ch:
		return true, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
})

var gateOpen = ray.Method0(gateClass, "open", func(g *Gate, ctx context.Context) (bool, error) {
	close(g.ch)
	return true, nil
})

var gateWaiting = ray.Method0(gateClass, "waiting", func(g *Gate, ctx context.Context) (int, error) {
	return int(g.waiting.Load()), nil
})

// lt_drop_handles creates n Counters and drops their handles while it
// runs on: the SDK gives their counts back, and the host kills them. It
// returns how many it then sees dead (calls through their IDs fail with
// ErrActorDied), polling each for a while.
var _ = ray.Func1("lt_drop_handles", func(ctx context.Context, n int) (int, error) {
	made := make([]string, n)
	for i := range made {
		c := counterClass.Remote()
		if err := c.Ready(ctx); err != nil {
			return 0, err
		}
		made[i] = c.ID()
	}
	for range 3 {
		runtime.GC()
		runtime.Gosched()
	}
	ray.Release(ray.Put(0)) // sends the queued releases now
	dead := 0
	for _, id := range made {
		c, err := forge(id) // counts for nothing, but calls still reach it
		if err != nil {
			return 0, err
		}
		for range 600 {
			if _, err := ray.Get(ctx, incr.Remote(c, 1)); errors.Is(err, ray.ErrActorDied) {
				dead++
				break
			}
			_ = ray.Sleep(ctx, 50*time.Millisecond)
		}
	}
	return dead, nil
})
