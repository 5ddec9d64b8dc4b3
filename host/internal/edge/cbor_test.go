package edge

import (
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// A "cbor" value reaches clients as its JSON, by Get and by GetStream,
// small (in memory) and streamed; one without a JSON form (a NaN, a
// forged ref, bytes that are no CBOR) is an invalid_argument error saying
// so, never its bytes as "json".
func TestCBORToClients(t *testing.T) {
	f := newFakeHost()
	c, _, _ := serve(t, f, nil)
	ctx := ctxFor(t)
	ref := abi.Ref{ID: ids.NewTaskID().Return(0), Owner: "h:1"}
	// {"k": [1, ref]}: 40 bytes, so Local says it streams.
	data := []byte{0xa1, 0x61, 'k', 0x82, 0x01}
	data = abi.AppendRefCBOR(data, ref)
	want := `{"k":[1,{"object_id":"` + ref.ID.String() + `","owner":"h:1"}]}`
	small := ids.NewTaskID().Put(0)
	f.set(small, abi.Value{Codec: abi.CodecCBOR, Data: []byte{0x63, 'a', 'b', 'c'}})
	streamed := ids.NewTaskID().Put(0)
	f.set(streamed, abi.Value{Codec: abi.CodecCBOR, Data: data})

	for id, want := range map[ids.ObjectID]string{small: `"abc"`, streamed: want} {
		res, err := c.Get(ctx, connect.NewRequest(&rayhostv1.GetRequest{Refs: []*rayhostv1.ObjectRef{{Id: id.String()}}}))
		if err != nil || res.Msg.GetValues()[0].GetJson() != want {
			t.Errorf("Get: %v, %v; want %s", res, err, want)
		}
		s, err := c.GetStream(ctx, connect.NewRequest(&rayhostv1.GetStreamRequest{Ref: &rayhostv1.ObjectRef{Id: id.String()}}))
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		codec := ""
		for s.Receive() {
			if h := s.Msg().GetHeader(); h != nil {
				codec = h.GetCodec()
			}
			got = append(got, s.Msg().GetChunk()...)
		}
		if s.Err() != nil || codec != "json" || string(got) != want {
			t.Errorf("GetStream: %q %s, %v; want json %s", codec, got, s.Err(), want)
		}
	}

	forged := append([]byte{0x81}, abi.AppendRefCBOR(nil, ref)...)
	forged[8] = 19 // a 19-byte ID
	for name, bad := range map[string][]byte{
		"NaN":       {0xf9, 0x7e, 0x00},
		"forged":    forged,
		"truncated": {0x9a, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c},
		"deep":      append([]byte(strings.Repeat("\x81", 300)), 0),
	} {
		id := ids.NewTaskID().Put(0)
		f.set(id, abi.Value{Codec: abi.CodecCBOR, Data: bad})
		_, err := c.Get(ctx, connect.NewRequest(&rayhostv1.GetRequest{Refs: []*rayhostv1.ObjectRef{{Id: id.String()}}}))
		var ce *connect.Error
		if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument || !strings.Contains(ce.Message(), "no JSON form") {
			t.Errorf("Get of %s: %v, want invalid_argument saying no JSON form", name, err)
		}
		s, err := c.GetStream(ctx, connect.NewRequest(&rayhostv1.GetStreamRequest{Ref: &rayhostv1.ObjectRef{Id: id.String()}}))
		if err != nil {
			t.Fatal(err)
		}
		for s.Receive() {
			if len(s.Msg().GetChunk()) > 0 {
				t.Errorf("GetStream of %s sent %q", name, s.Msg().GetChunk())
			}
		}
		if !errors.As(s.Err(), &ce) || ce.Code() != connect.CodeInvalidArgument {
			t.Errorf("GetStream of %s: %v, want invalid_argument", name, s.Err())
		}
	}
}

// TestCBORStreamCap: GetStream gathers a "cbor" value whole to convert it,
// so it takes at most Config.MaxCBORStream bytes of one (64 MiB unless
// set; 1 MiB here): a value whose header says more is refused before a
// byte is gathered, and one whose holder announces less and sends more is
// refused when the bytes pass the bound; both with resource_exhausted,
// and no chunk reaches the client. A value within the bound is read.
func TestCBORStreamCap(t *testing.T) {
	const bound = 1 << 20
	if e, err := New(newFakeHost(), Config{MaxMessageBytes: 2 << 20, MaxDrivers: 1, MaxDriversPerClient: 1,
		Done: make(chan struct{}), ErrClosed: errClosed, SessionTTL: time.Minute}); err != nil || e.cfg.MaxCBORStream != MaxCBORStream {
		t.Fatalf("the default bound: %v", err)
	}
	f := newFakeHost()
	c, _, _ := serve(t, f, func(c *Config) { c.MaxCBORStream = bound })
	ctx := ctxFor(t)
	// A byte string of bound bytes: 5 bytes of head beyond it.
	big := append([]byte{0x5a, 0x00, 0x10, 0x00, 0x00}, make([]byte, bound)...)
	announced, lying, within := ids.NewTaskID().Put(0), ids.NewTaskID().Put(0), ids.NewTaskID().Put(0)
	f.set(announced, abi.Value{Codec: abi.CodecCBOR, Data: big[:64]})
	f.set(lying, abi.Value{Codec: abi.CodecCBOR, Data: big})
	f.set(within, abi.Value{Codec: abi.CodecCBOR, Data: append([]byte{0x5a, 0x00, 0x00, 0x10, 0x00}, make([]byte, 4096)...)})
	f.mu.Lock()
	f.claim = map[ids.ObjectID]int64{announced: bound + 1, lying: 100}
	f.chunk = 64 << 10
	f.mu.Unlock()
	read := func(id ids.ObjectID) (int, error) {
		s, err := c.GetStream(ctx, connect.NewRequest(&rayhostv1.GetStreamRequest{Ref: &rayhostv1.ObjectRef{Id: id.String()}}))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for s.Receive() {
			n += len(s.Msg().GetChunk())
		}
		return n, s.Err()
	}
	for name, id := range map[string]ids.ObjectID{"announced too large": announced, "sends more than it announced": lying} {
		n, err := read(id)
		if n > 0 || codeOfCall(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "more than the 1048576 a client may read as JSON") {
			t.Errorf("%s: %d bytes, %v", name, n, err)
		}
	}
	if n, err := read(within); err != nil || n == 0 {
		t.Errorf("a value within the bound: %d bytes, %v", n, err)
	}
}
