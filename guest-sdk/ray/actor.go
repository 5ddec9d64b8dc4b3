package ray

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// Actors are stateful remote workers: a Go value built by a constructor,
// whose methods run one at a time, in the order each caller submitted them,
// on the instance that holds the value.
//
//	type Counter struct{ n int }
//
//	var counterClass = ray.Actor0("Counter", func(ctx context.Context) (*Counter, error) { return &Counter{}, nil })
//	var incr = ray.Method1(counterClass, "incr", func(c *Counter, ctx context.Context, by int) (int, error) {
//		c.n += by
//		return c.n, nil
//	})
//
//	counter := counterClass.Remote()
//	ref := incr.Remote(counter, 2) // an ObjectRef[int]
//
// A handle is a value: pass it to tasks and other actors, or put it in an
// object; calls through any copy reach the same actor.

// ActorClass is a registered actor type whose state is an *S.
type ActorClass[S any] struct {
	e    *entry
	opts options
}

// ActorHandle names a live actor of type S. Its copies share one count of
// the host's (lifetime.go): once none is reachable, the count is given back
// like an ObjectRef's.
type ActorHandle[S any] struct {
	id    ids.TaskID
	owner string
	err   error
	h     *handle
}

// ID is the actor's hex ID.
func (h ActorHandle[S]) ID() string { return h.id.String() }

// Err reports whether creating or finding the actor failed.
func (h ActorHandle[S]) Err() error { return h.err }

type handleJSON struct {
	ActorID string `json:"actor_id"`
	Owner   string `json:"owner,omitempty"`
}

// MarshalJSON encodes the handle as {"actor_id": "...", "owner": "..."}.
func (h ActorHandle[S]) MarshalJSON() ([]byte, error) {
	if h.err != nil {
		return nil, h.err
	}
	if h.id.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(handleJSON{ActorID: h.id.String(), Owner: h.owner})
}

// UnmarshalJSON decodes what MarshalJSON writes.
func (h *ActorHandle[S]) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*h = ActorHandle[S]{}
		return nil
	}
	var j handleJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	id, err := ids.ParseTaskID(j.ActorID)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrDecode, err)
	}
	*h = ActorHandle[S]{id: id, owner: j.Owner, h: track(abi.ActorRef(id), 1)}
	return nil
}

// MarshalCBOR encodes the handle as its tag (abi.TagActor, ABI.md §9),
// and the zero handle as null.
func (h ActorHandle[S]) MarshalCBOR() ([]byte, error) {
	if h.err != nil {
		return nil, h.err
	}
	if h.id.IsZero() {
		return []byte{cborNull}, nil
	}
	return abi.AppendActorCBOR(nil, h.id, h.owner), nil
}

// UnmarshalCBOR decodes what MarshalCBOR writes.
func (h *ActorHandle[S]) UnmarshalCBOR(b []byte) error {
	if isCBORNull(b) {
		*h = ActorHandle[S]{}
		return nil
	}
	id, owner, err := abi.DecodeActorCBOR(b)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrDecode, err)
	}
	if id.IsZero() { // the zero handle, as MarshalCBOR writes it
		*h = ActorHandle[S]{}
		return nil
	}
	*h = ActorHandle[S]{id: id, owner: owner, h: track(abi.ActorRef(id), 1)}
	return nil
}

// Options returns a copy of c whose actors use opts.
func (c *ActorClass[S]) Options(opts ...Option) *ActorClass[S] {
	g := *c
	g.opts = c.opts.with(opts)
	return &g
}

// Remote creates an actor: its constructor runs on a worker, which then
// keeps the actor's state for its lifetime. It returns at once.
func (c *ActorClass[S]) Remote(args ...any) ActorHandle[S] {
	id, owner, err := submitKind(c.e, c.opts, args, abi.KindActorCreate, ids.TaskID{})
	if err != nil {
		return ActorHandle[S]{err: fmt.Errorf("%s.Remote: %w", c.e.name, err)}
	}
	return ActorHandle[S]{id: id, owner: owner, h: track(abi.ActorRef(id), 1)}
}

// Ready waits until the actor's constructor has run; it returns its error.
func (h ActorHandle[S]) Ready(ctx context.Context) error {
	if h.err != nil {
		return h.err
	}
	_, err := Get(ctx, ObjectRef[any]{id: h.id.Return(0), owner: h.owner})
	return err
}

// actors holds the state of the actors that live in this instance.
var (
	actorsMu sync.Mutex
	actors   = map[ids.TaskID]any{}
)

func registerActor[S any](name string, argTypes []reflect.Type, ctor func(context.Context, []abi.Value) (*S, error), opts []Option) *ActorClass[S] {
	e := &entry{name: name, argTypes: argTypes, numReturns: 1, opts: options{}.with(opts), actor: "class"}
	e.call = func(ctx context.Context, args []abi.Value) ([]abi.Value, error) {
		t := ctx.Value(taskKey{}).(*taskState)
		s, err := ctor(ctx, args)
		if err != nil {
			return nil, err
		}
		actorsMu.Lock()
		actors[t.actor] = s
		actorsMu.Unlock()
		return []abi.Value{{Codec: abi.CodecJSON, Data: []byte("null")}}, nil
	}
	register(e)
	return &ActorClass[S]{e: e, opts: e.opts}
}

// ActorMethod is a method of actors of type S returning R.
type ActorMethod[S, R any] struct {
	e    *entry
	opts options
}

// Options returns a copy of m whose calls use opts.
func (m *ActorMethod[S, R]) Options(opts ...Option) *ActorMethod[S, R] {
	g := *m
	g.opts = m.opts.with(opts)
	return &g
}

// Remote calls the method on the actor h names and returns at once.
func (m *ActorMethod[S, R]) Remote(h ActorHandle[S], args ...any) ObjectRef[R] {
	if h.err != nil {
		return ObjectRef[R]{err: h.err}
	}
	id, owner, err := submitKind(m.e, m.opts, args, abi.KindActorCall, h.id)
	if err != nil {
		return ObjectRef[R]{err: fmt.Errorf("%s.Remote: %w", m.e.name, err)}
	}
	return ObjectRef[R]{id: id.Return(0), owner: owner, h: track(id.Return(0), 1)}
}

// stateOf is the state of the actor whose method runs in ctx.
func stateOf[S any](ctx context.Context, class *ActorClass[S]) (*S, error) {
	t := ctx.Value(taskKey{}).(*taskState)
	actorsMu.Lock()
	st, ok := actors[t.actor]
	actorsMu.Unlock()
	s, typed := st.(*S)
	if !ok || !typed {
		return nil, fmt.Errorf("%w: actor %s is not of type %s here", ErrHost, t.actor, class.e.name)
	}
	return s, nil
}

func registerMethod[S, R any](class *ActorClass[S], name string, argTypes []reflect.Type, call func(s *S, ctx context.Context, args []abi.Value) (R, error)) *ActorMethod[S, R] {
	e := &entry{name: class.e.name + "." + name, argTypes: argTypes, numReturns: 1, actor: "method"}
	e.call = func(ctx context.Context, args []abi.Value) ([]abi.Value, error) {
		s, err := stateOf(ctx, class)
		if err != nil {
			return nil, err
		}
		r, err := call(s, ctx, args)
		if err != nil {
			return nil, err
		}
		v, err := encodeValue(r)
		if err != nil {
			return nil, fmt.Errorf("encoding the result: %w", err)
		}
		return []abi.Value{v}, nil
	}
	register(e)
	return &ActorMethod[S, R]{e: e}
}

// GetActor finds the actor created with ray.Name(name) (in namespace ns,
// "" for the default one).
func GetActor[S any](ctx context.Context, name, ns string) (ActorHandle[S], error) {
	req := abi.GetActorRequest{Name: name, Namespace: ns}
	b, err := hostCall(abi.OpGetActor, req.Encode(nil))
	if err != nil {
		return ActorHandle[S]{}, err
	}
	var info abi.ActorInfo
	if err := info.Decode(b); err != nil {
		return ActorHandle[S]{}, fmt.Errorf("%w: malformed actor info", ErrHost)
	}
	return ActorHandle[S]{id: info.Actor, owner: info.Owner, h: track(abi.ActorRef(info.Actor), 1)}, nil
}

// Kill ends the actor h names: its pending calls fail with ErrActorDied.
// With noRestart false, an actor with restarts left starts again.
func Kill[S any](h ActorHandle[S], noRestart bool) error {
	if h.err != nil {
		return h.err
	}
	req := abi.KillRequest{Actor: h.id, NoRestart: noRestart}
	_, err := hostCall(abi.OpKill, req.Encode(nil))
	return err
}

// Name gives an actor a name, by which GetActor finds it from any driver.
func Name(name string) Option { return func(o *options) { o.name = name } }

// Namespace sets the namespace of an actor's name.
func Namespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// MaxRestarts sets how often an actor restarts (its constructor runs again)
// after its worker dies: -1 without limit; the default is 0, as in Ray.
func MaxRestarts(n int) Option {
	return func(o *options) { o.maxRestarts = o.count("MaxRestarts", n) }
}

// MaxTaskRetries sets how often a method call cut short by the actor's
// death runs again on the restarted actor: -1 without limit, default 0.
func MaxTaskRetries(n int) Option {
	return func(o *options) { o.maxTaskRetries = o.count("MaxTaskRetries", n) }
}
