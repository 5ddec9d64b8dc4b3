package edge

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// hangGuard bounds a test that would otherwise hang; it is no expectation
// of speed.
const hangGuard = 2 * time.Minute

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	t.Cleanup(cancel)
	return ctx
}

func codeOfCall(err error) connect.Code {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Code()
	}
	return 0
}

func TestNewChecksItsConfig(t *testing.T) {
	done := make(chan struct{})
	good := Config{MaxMessageBytes: 1 << 20, MaxDrivers: 1, MaxDriversPerClient: 1, Done: done, ErrClosed: errClosed, SessionTTL: time.Minute}
	if _, err := New(newFakeHost(), good); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Config){
		"small messages":      func(c *Config) { c.MaxMessageBytes = 1<<20 - 1 },
		"no drivers":          func(c *Config) { c.MaxDrivers = 0 },
		"no done":             func(c *Config) { c.Done = nil },
		"no ErrClosed":        func(c *Config) { c.ErrClosed = nil },
		"no session TTL":      func(c *Config) { c.SessionTTL = 0 },
		"negative cbor bound": func(c *Config) { c.MaxCBORStream = -1 },
	} {
		cfg := good
		mutate(&cfg)
		if _, err := New(newFakeHost(), cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := New(nil, good); !errors.Is(err, ErrConfig) {
		t.Errorf("no host: %v", err)
	}
}

func TestPutGetWait(t *testing.T) {
	f := newFakeHost()
	c, _, _ := serve(t, f, nil)
	ctx := ctxFor(t)
	put, err := c.Put(ctx, connect.NewRequest(&rayhostv1.PutRequest{Value: &rayhostv1.Value{Kind: &rayhostv1.Value_Json{Json: `{"a":1}`}}}))
	if err != nil {
		t.Fatal(err)
	}
	ref := put.Msg.GetRef()
	if ref.GetOwner() != f.addr {
		t.Errorf("owner %q", ref.GetOwner())
	}
	got, err := c.Get(ctx, connect.NewRequest(&rayhostv1.GetRequest{Refs: []*rayhostv1.ObjectRef{ref}}))
	if err != nil {
		t.Fatal(err)
	}
	if v := got.Msg.GetValues(); len(v) != 1 || v[0].GetJson() != `{"a":1}` {
		t.Errorf("values %v", v)
	}
	missing := &rayhostv1.ObjectRef{Id: ids.NewTaskID().Return(0).String(), Owner: "other:1"}
	w, err := c.Wait(ctx, connect.NewRequest(&rayhostv1.WaitRequest{Refs: []*rayhostv1.ObjectRef{missing, ref}, NumReturns: 2, TimeoutMs: 1}))
	if err != nil {
		t.Fatalf("a wait that times out is no error: %v", err)
	}
	if len(w.Msg.GetReady()) != 1 || w.Msg.GetReady()[0].GetId() != ref.GetId() || len(w.Msg.GetNotReady()) != 1 {
		t.Errorf("wait %v", w.Msg)
	}
	f.mu.Lock()
	borrowedOther := false
	for _, b := range f.borrowed {
		borrowedOther = borrowedOther || b.Owner == "other:1"
	}
	f.mu.Unlock()
	if !borrowedOther {
		t.Error("a ref another host owns was not borrowed")
	}
	// Ray's ray.wait([]) returns ([], []): no refs is no error.
	if w, err := c.Wait(ctx, connect.NewRequest(&rayhostv1.WaitRequest{})); err != nil || len(w.Msg.GetReady())+len(w.Msg.GetNotReady()) != 0 {
		t.Errorf("wait for nothing = %v, %v; want two empty lists", w, err)
	}
	if _, err := c.Get(ctx, connect.NewRequest(&rayhostv1.GetRequest{Refs: []*rayhostv1.ObjectRef{missing}, TimeoutMs: 1})); codeOfCall(err) != connect.CodeDeadlineExceeded {
		t.Errorf("get of a missing object: %v", err)
	}
}

// Malformed requests fail with invalid_argument, and the edge keeps
// serving.
func TestMalformedRequests(t *testing.T) {
	f := newFakeHost()
	c, _, _ := serve(t, f, nil)
	ctx := ctxFor(t)
	ref := &rayhostv1.ObjectRef{Id: ids.NewTaskID().Return(0).String()}
	for name, call := range map[string]func() error{
		"get without ref": func() error {
			_, err := c.Get(ctx, connect.NewRequest(&rayhostv1.GetRequest{Refs: []*rayhostv1.ObjectRef{nil}}))
			return err
		},
		"get of a bad id": func() error {
			_, err := c.Get(ctx, connect.NewRequest(&rayhostv1.GetRequest{Refs: []*rayhostv1.ObjectRef{{Id: "zz"}}}))
			return err
		},
		"put of bad JSON": func() error {
			_, err := c.Put(ctx, connect.NewRequest(&rayhostv1.PutRequest{Value: &rayhostv1.Value{Kind: &rayhostv1.Value_Json{Json: "{"}}}))
			return err
		},
		"put of nothing": func() error {
			_, err := c.Put(ctx, connect.NewRequest(&rayhostv1.PutRequest{}))
			return err
		},
		"wait for more than given": func() error {
			_, err := c.Wait(ctx, connect.NewRequest(&rayhostv1.WaitRequest{Refs: []*rayhostv1.ObjectRef{ref}, NumReturns: 2}))
			return err
		},
		"wait for one ref twice": func() error {
			_, err := c.Wait(ctx, connect.NewRequest(&rayhostv1.WaitRequest{Refs: []*rayhostv1.ObjectRef{ref, ref}}))
			return err
		},
		"cancel without ref": func() error {
			_, err := c.Cancel(ctx, connect.NewRequest(&rayhostv1.CancelRequest{}))
			return err
		},
		"list tasks in no such state": func() error {
			_, err := c.ListTasks(ctx, connect.NewRequest(&rayhostv1.ListTasksRequest{State: "sleeping"}))
			return err
		},
		"list tasks of a bad id": func() error {
			_, err := c.ListTasks(ctx, connect.NewRequest(&rayhostv1.ListTasksRequest{TaskId: "nope"}))
			return err
		},
		"register garbage": func() error {
			_, err := c.RegisterModule(ctx, connect.NewRequest(&rayhostv1.RegisterModuleRequest{Wasm: []byte("MZ")}))
			return err
		},
		"run a library": func() error {
			s, err := c.Run(ctx, connect.NewRequest(&rayhostv1.RunRequest{Module: "lib"}))
			if err != nil {
				return err
			}
			for s.Receive() {
			}
			return s.Err()
		},
	} {
		if err := call(); codeOfCall(err) != connect.CodeInvalidArgument {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := c.Health(ctx, connect.NewRequest(&rayhostv1.HealthRequest{})); err != nil {
		t.Errorf("after the malformed requests: %v", err)
	}
}

func TestGetOfAFailedTask(t *testing.T) {
	f := newFakeHost()
	c, _, _ := serve(t, f, nil)
	ctx := ctxFor(t)
	id := ids.NewTaskID().Return(0)
	f.set(id, (&abi.TaskError{Kind: abi.ErrorWorkerDied, Function: "f", Message: "killed"}).Encode())
	ref := &rayhostv1.ObjectRef{Id: id.String()}
	_, err := c.Get(ctx, connect.NewRequest(&rayhostv1.GetRequest{Refs: []*rayhostv1.ObjectRef{ref}}))
	if codeOfCall(err) != connect.CodeAborted || !strings.Contains(err.Error(), "worker_died: killed") {
		t.Errorf("get: %v", err)
	}
	s, err := c.GetStream(ctx, connect.NewRequest(&rayhostv1.GetStreamRequest{Ref: ref}))
	if err != nil {
		t.Fatal(err)
	}
	for s.Receive() {
		t.Error("a failed task's object streamed a chunk")
	}
	if codeOfCall(s.Err()) != connect.CodeAborted {
		t.Errorf("stream: %v", s.Err())
	}
}

func TestGetStream(t *testing.T) {
	f := newFakeHost()
	c, _, _ := serve(t, f, nil)
	ctx := ctxFor(t)
	small, large, lost := ids.NewTaskID().Put(0), ids.NewTaskID().Put(0), ids.NewTaskID().Put(0)
	f.set(small, abi.Value{Codec: abi.CodecRaw, Data: []byte("tiny")})
	f.set(large, abi.Value{Codec: abi.CodecRaw, Data: []byte("a value of more than sixteen bytes")})
	f.mu.Lock()
	f.lost[lost] = true
	f.mu.Unlock()
	for _, id := range []ids.ObjectID{small, large} {
		s, err := c.GetStream(ctx, connect.NewRequest(&rayhostv1.GetStreamRequest{Ref: &rayhostv1.ObjectRef{Id: id.String()}}))
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		for s.Receive() {
			got = append(got, s.Msg().GetChunk()...)
		}
		if want, _, _ := f.Local(ctx, id); s.Err() != nil || string(got) != string(want.Data) {
			t.Errorf("streamed %q, %v", got, s.Err())
		}
	}
	s, err := c.GetStream(ctx, connect.NewRequest(&rayhostv1.GetStreamRequest{Ref: &rayhostv1.ObjectRef{Id: lost.String()}}))
	if err != nil {
		t.Fatal(err)
	}
	for s.Receive() {
	}
	var ce *connect.Error
	if !errors.As(s.Err(), &ce) || ce.Code() != connect.CodeDataLoss || !strings.Contains(ce.Message(), "object_lost") {
		t.Errorf("a lost object: %v", s.Err())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.fetched) != 2 {
		t.Errorf("fetched %v", f.fetched)
	}
}

// A Get whose values one message cannot carry is refused before reading
// them, with resource_exhausted.
func TestGetTooLarge(t *testing.T) {
	f := newFakeHost()
	c, _, _ := serve(t, f, nil)
	ctx := ctxFor(t)
	var refs []*rayhostv1.ObjectRef
	for range 3 {
		id := ids.NewTaskID().Put(0)
		f.set(id, abi.Value{Codec: abi.CodecRaw, Data: make([]byte, 600<<10)})
		refs = append(refs, &rayhostv1.ObjectRef{Id: id.String()})
	}
	if _, err := c.Get(ctx, connect.NewRequest(&rayhostv1.GetRequest{Refs: refs[:1]})); err != nil {
		t.Fatalf("one value fits: %v", err)
	}
	_, err := c.Get(ctx, connect.NewRequest(&rayhostv1.GetRequest{Refs: refs}))
	if codeOfCall(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "use GetStream") {
		t.Errorf("get: %v", err)
	}
}
