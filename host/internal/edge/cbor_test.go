package edge

import (
	"errors"
	"strings"
	"testing"

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
