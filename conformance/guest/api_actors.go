package main

// The actor API issue 15 asks for (max_concurrency, actor lifetime), as a
// guest would use it; in the default build (api.go is behind the tag
// conformance_api).

import (
	"context"
	"sync"
	"time"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

// max_concurrency: a threaded actor runs several calls at once, so a
// signal actor can block callers in wait until send.

// Signal is a one-shot barrier.
type Signal struct {
	once sync.Once
	ch   chan struct{}
}

var signalClass = ray.Actor0("Signal", func(ctx context.Context) (*Signal, error) {
	return &Signal{ch: make(chan struct{})}, nil
}, ray.MaxConcurrency(8))

var signalWait = ray.Method0(signalClass, "wait", func(s *Signal, ctx context.Context) (bool, error) {
	select {
	case <-s.ch:
		return true, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
})

var signalSend = ray.Method0(signalClass, "send", func(s *Signal, ctx context.Context) (bool, error) {
	s.once.Do(func() { close(s.ch) })
	return true, nil
})

// waitOnSignal is a task blocked on the barrier.
var waitOnSignal = ray.Func1("api_wait_on_signal", func(ctx context.Context, sig ray.ActorHandle[Signal]) (bool, error) {
	return ray.Get(ctx, signalWait.Remote(sig))
})

var _ = ray.Func0("api_probe_barrier", func(ctx context.Context) ([]Step, error) {
	var s steps
	sig := signalClass.Remote()
	defer func() { _ = ray.Kill(sig, true) }()
	waiters := []ray.ObjectRef[bool]{signalWait.Remote(sig), signalWait.Remote(sig), waitOnSignal.Remote(sig)}
	ready, _, err := ray.Wait(ctx, waiters, 1, time.Second)
	s.add("waiters done before send", len(ready), err)
	v, err := ray.Get(ctx, signalSend.Remote(sig)) // runs while the waits block
	s.add("send", v, err)
	vs, err := ray.GetAll(ctx, waiters)
	s.add("waiters after send", vs, err)
	return s, nil
})

// Actor lifetime: an actor dies with its owner unless Detached.

var _ = ray.Func2("api_make_named", func(ctx context.Context, name string, detached bool) (int, error) {
	opts := []ray.Option{ray.Name(name)}
	if detached {
		opts = append(opts, ray.Detached())
	}
	h := counterClass.Options(opts...).Remote()
	return ray.Get(ctx, incr.Remote(h, 1))
})

var _ = ray.Func1("api_named_incr", func(ctx context.Context, name string) (int, error) {
	h, err := ray.GetActor[Counter](ctx, name, "")
	if err != nil {
		return 0, err
	}
	return ray.Get(ctx, incr.Remote(h, 1))
})

var _ = ray.Func1("api_kill_named", func(ctx context.Context, name string) (bool, error) {
	h, err := ray.GetActor[Counter](ctx, name, "")
	if err != nil {
		return false, err
	}
	return true, ray.Kill(h, true)
})
