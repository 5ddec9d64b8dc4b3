package abi

import (
	"bytes"
	"testing"

	"github.com/rayhost/rayhost/internal/ids"
)

// TestPutDataHead: PutHead followed by the bytes is exactly the PutRequest
// of the same put, so the host sees an ordinary put.
func TestPutDataHead(t *testing.T) {
	id := ids.NewTaskID().Put(3)
	for _, n := range []int{0, 1, 127, 128, 1 << 20} {
		data := bytes.Repeat([]byte{7}, n)
		pd := PutDataRequest{ID: id, Codec: CodecRaw, Ptr: 4096, Len: uint32(n)}
		want := (&PutRequest{ID: id, Value: Value{Codec: CodecRaw, Data: data}}).Encode(nil)
		if got := append(pd.PutHead(nil), data...); !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: the head and the bytes are not the PutRequest", n)
		}
		var back PutDataRequest
		if err := back.Decode(pd.Encode(nil)); err != nil || back != pd {
			t.Fatalf("round trip: %+v %v", back, err)
		}
	}
	var bad PutDataRequest
	if err := bad.Decode((&PutDataRequest{ID: ids.NewTaskID().Return(1)}).Encode(nil)); err == nil {
		t.Fatal("a put_data of a return ID decoded")
	}
	if err := CheckRequest(OpPutData, []byte{1, 2}); err == nil {
		t.Fatal("a truncated put_data passed the table's check")
	}
	if OpPutData.Route() != RouteWorker || !OpPutData.FromGuest() {
		t.Fatalf("put_data: route %d", OpPutData.Route())
	}
}
