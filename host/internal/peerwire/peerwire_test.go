package peerwire

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/ipc"
	"github.com/rayhost/rayhost/internal/scheduler"
)

func sampleSpec(t *testing.T) *ExecSpec {
	t.Helper()
	req, err := scheduler.Make(1.5, 0, map[string]float64{"tpu": 2})
	if err != nil {
		t.Fatal(err)
	}
	task := ids.NewTaskID()
	arg := task.Return(1)
	return &ExecSpec{Task: task, Attempt: 3, Kind: abi.KindActorCreate, Function: "f", Module: strings.Repeat("a", 64),
		Owner: "127.0.0.1:1", OwnerID: "h1", NumReturns: 2, Req: req, Limits: abi.Limits{MemoryPages: 10, TimeoutNs: 5},
		Grants: abi.Grants{Mounts: []abi.Mount{{Host: "/d", Guest: "/g"}}, Env: []abi.KV{{Name: "K", Value: "V"}}},
		Args:   []abi.Value{{Codec: abi.CodecJSON, Data: []byte("1")}, Held{Codec: abi.CodecRaw, Size: 9, Holders: []string{"a:1"}}.Value()},
		ArgIDs: []ids.ObjectID{{}, arg}, Actor: task, HoldCPU: true}
}

func TestExecSpecRoundTrip(t *testing.T) {
	s := sampleSpec(t)
	got, err := DecodeExecSpec(s.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, s)
	}
}

// TestMalformedPayloads: every truncation and a trailing byte of each
// payload is refused with ErrMalformed, never a panic.
func TestMalformedPayloads(t *testing.T) {
	spec := sampleSpec(t).Encode()
	out := (&Outcome{Task: ids.NewTaskID(), Status: abi.StatusOK, Values: []abi.Value{{Codec: abi.CodecRaw, Data: []byte("x")}}}).Encode()
	held := Held{Codec: abi.CodecJSON, Size: 3, Holders: []string{"a:1", "b:2"}}.Encode(nil)
	put := (&PutHeld{ID: ids.NewTaskID().Put(1), Held: held}).Encode()
	decoders := map[string]struct {
		b   []byte
		dec func([]byte) error
	}{
		"exec":     {spec, func(b []byte) error { _, err := DecodeExecSpec(b); return err }},
		"outcome":  {out, func(b []byte) error { _, err := DecodeOutcome(b); return err }},
		"held":     {held, func(b []byte) error { _, err := DecodeHeld(b); return err }},
		"put_held": {put, func(b []byte) error { _, err := DecodePutHeld(b); return err }},
	}
	for name, c := range decoders {
		if err := c.dec(c.b); err != nil {
			t.Fatalf("%s: whole payload: %v", name, err)
		}
		for n := range len(c.b) {
			if err := c.dec(c.b[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s cut to %d bytes: %v, want ErrMalformed", name, n, err)
			}
		}
		if err := c.dec(append(c.b[:len(c.b):len(c.b)], 0)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%s with a trailing byte: %v", name, err)
		}
	}
}

// TestHeldRefusesBadCodecs: a held value names the codec of real bytes,
// never an error or another held value.
func TestHeldRefusesBadCodecs(t *testing.T) {
	for _, c := range []abi.Codec{abi.CodecError, abi.CodecHeld, 7} {
		if _, err := DecodeHeld(Held{Codec: c, Holders: []string{"a:1"}}.Encode(nil)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("codec %d: %v", c, err)
		}
	}
	v := Held{Codec: abi.CodecRaw, Size: 1 << 40, Holders: []string{"a:1"}}
	got, err := DecodeHeld(v.Value().Data)
	if err != nil || !reflect.DeepEqual(got, v) {
		t.Fatalf("%+v, %v", got, err)
	}
}

func TestExecSpecRefusesTooManyReturns(t *testing.T) {
	s := sampleSpec(t)
	s.NumReturns = abi.MaxIndex + 1
	if _, err := DecodeExecSpec(s.Encode()); !errors.Is(err, ErrMalformed) {
		t.Fatal(err)
	}
}

// peerServer answers AddLocation and Execute (it echoes one frame).
type peerServer struct {
	rayhostv1connect.UnimplementedPeerServiceHandler
	rayhostv1connect.UnimplementedTaskServiceHandler
}

func (peerServer) AddLocation(context.Context, *connect.Request[rayhostv1.AddLocationRequest]) (*connect.Response[rayhostv1.AddLocationResponse], error) {
	return connect.NewResponse(&rayhostv1.AddLocationResponse{}), nil
}

func (peerServer) Execute(ctx context.Context, s *connect.BidiStream[rayhostv1.ExecuteRequest, rayhostv1.ExecuteResponse]) error {
	m, err := s.Receive()
	if err != nil {
		return err
	}
	return s.Send(&rayhostv1.ExecuteResponse{Type: m.GetType(), Payload: m.GetPayload()})
}

func (peerServer) Health(context.Context, *connect.Request[rayhostv1.HealthRequest]) (*connect.Response[rayhostv1.HealthResponse], error) {
	return connect.NewResponse(&rayhostv1.HealthResponse{}), nil
}

func startServer(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(rayhostv1connect.NewPeerServiceHandler(peerServer{}, connect.WithInterceptors(ServerInterceptor())))
	mux.Handle(rayhostv1connect.NewTaskServiceHandler(peerServer{}, connect.WithInterceptors(ServerInterceptor())))
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// h2c is a client that speaks HTTP/2 without TLS, as hosts do: the
// Execute stream needs it.
func h2c(t *testing.T) *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// setHeader is a client interceptor that sets a header (a peer of another
// version, or one that sends none).
type setHeader struct{ k, v string }

func (s setHeader) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if s.v == "" {
			req.Header().Del(s.k)
		} else {
			req.Header().Set(s.k, s.v)
		}
		return next(ctx, req)
	}
}

func (s setHeader) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		c := next(ctx, spec)
		if s.v == "" {
			c.RequestHeader().Del(s.k)
		} else {
			c.RequestHeader().Set(s.k, s.v)
		}
		return c
	}
}

func (s setHeader) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// call makes a unary and a streaming call with opts and returns their errors.
func call(t *testing.T, url string, opts ...connect.ClientOption) (unary, stream error, answered string) {
	t.Helper()
	pc := rayhostv1connect.NewPeerServiceClient(h2c(t), url, opts...)
	res, unary := pc.AddLocation(t.Context(), connect.NewRequest(&rayhostv1.AddLocationRequest{}))
	if unary == nil {
		answered = res.Header().Get(VersionHeader)
	}
	s := pc.Execute(t.Context())
	_ = s.Send(&rayhostv1.ExecuteRequest{Type: 100, Payload: []byte("x")}) // a refusal shows in Receive
	var m *rayhostv1.ExecuteResponse
	if m, stream = s.Receive(); stream == nil && string(m.GetPayload()) != "x" {
		t.Fatalf("echo: %q", m.GetPayload())
	}
	_ = s.CloseRequest()
	_ = s.CloseResponse()
	return unary, stream, answered
}

// TestVersionMatchingPeerWorks: a peer of this version is served, unary and
// streaming, and told the version in the answer.
func TestVersionMatchingPeerWorks(t *testing.T) {
	url := startServer(t)
	unary, stream, answered := call(t, url, connect.WithInterceptors(ClientInterceptor()))
	if unary != nil || stream != nil {
		t.Fatalf("unary %v, stream %v", unary, stream)
	}
	if answered != strconv.Itoa(Version) {
		t.Fatalf("answered version %q", answered)
	}
}

// TestVersionMismatchRefused: a peer of another version, or one that
// sends none, is refused with FailedPrecondition naming both versions,
// before the handler runs.
func TestVersionMismatchRefused(t *testing.T) {
	url := startServer(t)
	for name, c := range map[string]struct{ header, want string }{
		"another version": {"1", "this host speaks version " + strconv.Itoa(Version) + ", the caller speaks 1"},
		"none":            {"", "this host speaks version " + strconv.Itoa(Version) + ", the caller speaks none"},
		"garbage":         {"one", `the caller speaks "one"`},
	} {
		t.Run(name, func(t *testing.T) {
			opts := connect.WithInterceptors(setHeader{VersionHeader, c.header})
			unary, stream, _ := call(t, url, opts)
			for what, err := range map[string]error{"unary": unary, "stream": stream} {
				if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("%s: %v, want FailedPrecondition with %q", what, err, c.want)
				}
				var ce *connect.Error
				if errors.As(err, &ce) && ce.Meta().Get(VersionHeader) != strconv.Itoa(Version) {
					t.Fatalf("%s: the refusal does not say this host's version: %v", what, ce.Meta())
				}
			}
		})
	}
}

// TestVersionOnTaskService: a peer's Health call (a load report) is not
// refused for its version, and its answer says the host's version, which
// CheckVersion compares.
func TestVersionOnTaskService(t *testing.T) {
	url := startServer(t)
	tc := rayhostv1connect.NewTaskServiceClient(h2c(t), url, connect.WithInterceptors(setHeader{VersionHeader, strconv.Itoa(Version)}))
	res, err := tc.Health(t.Context(), connect.NewRequest(&rayhostv1.HealthRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckVersion(res.Header(), "the peer"); err != nil {
		t.Fatalf("answer: %v", err)
	}
	if err := CheckVersion(http.Header{VersionHeader: {"7"}}, "the peer"); !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "the peer speaks 7") {
		t.Fatal(err)
	}
	// A user's call (no version) gets no version header.
	plain := rayhostv1connect.NewTaskServiceClient(h2c(t), url)
	if res, err := plain.Health(t.Context(), connect.NewRequest(&rayhostv1.HealthRequest{})); err != nil || res.Header().Get(VersionHeader) != "" {
		t.Fatalf("%v, %v", res.Header(), err)
	}
}

// A peer's ints value of a length that is not whole integers is malformed
// where it comes in (found by an attack review), and a good one passes.
func TestDecodeValuesInts(t *testing.T) {
	for _, tc := range []struct {
		n  int
		ok bool
	}{{16, true}, {0, true}, {9, false}} {
		var e abi.Encoder
		EncodeValues(&e, []abi.Value{{Codec: abi.CodecInts, Data: make([]byte, tc.n)}})
		d := abi.NewDecoder(e.B)
		vals := DecodeValues(d)
		if err := d.Err(); (err == nil) != tc.ok || (tc.ok && len(vals) != 1) {
			t.Errorf("%d bytes of ints: %v, %v", tc.n, vals, err)
		}
	}
}

// TestBatchRoundTrip: subs appended one after the other decode as they
// were; what is not a batch is ErrMalformed.
func TestBatchRoundTrip(t *testing.T) {
	in := []Sub{{Link: 1, Type: ipc.TypePeerExec, Payload: []byte("spec")}, {Link: 1 << 40, Type: ipc.TypePeerEnd}, {Link: 3, Type: ipc.TypeReply, Payload: make([]byte, 300)}}
	var b []byte
	for _, s := range in {
		b = AppendSub(b, s)
	}
	out, err := DecodeBatch(b)
	if err != nil || len(out) != len(in) {
		t.Fatalf("DecodeBatch: %d subs, %v", len(out), err)
	}
	for i := range in {
		if out[i].Link != in[i].Link || out[i].Type != in[i].Type || string(out[i].Payload) != string(in[i].Payload) {
			t.Fatalf("sub %d: %+v, want %+v", i, out[i], in[i])
		}
	}
	for name, bad := range map[string][]byte{
		"empty":     nil,
		"truncated": b[:len(b)-1],
		"link 0":    AppendSub(nil, Sub{Link: 0, Type: ipc.TypePeerExec}),
		"no type":   {1},
	} {
		if _, err := DecodeBatch(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// FuzzDecodeBatch: any bytes decode or fail with ErrMalformed, and what
// decodes, encoded again, decodes again.
func FuzzDecodeBatch(f *testing.F) {
	f.Add(AppendSub(nil, Sub{Link: 1, Type: ipc.TypePeerExec, Payload: []byte("x")}))
	f.Add([]byte{0x80, 0x80, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		subs, err := DecodeBatch(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeBatch: %v, want ErrMalformed", err)
			}
			return
		}
		var again []byte
		for _, s := range subs {
			again = AppendSub(again, s)
		}
		if _, err := DecodeBatch(again); err != nil {
			t.Fatalf("re-encoded batch: %v", err)
		}
	})
}
