package worker

import (
	"bytes"
	"context"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ipc"
)

// TestPutData: op put_data reaches the host as the put of the bytes where
// the request says they are in the guest's memory — the frame op put
// would have sent; bytes outside the memory, a put past the result limit
// and an ID that is not one of the task's puts are refused, and nothing
// reaches the host for them.
func TestPutData(t *testing.T) {
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	mod, err := rt.Instantiate(ctx, memoryModule())
	if err != nil {
		t.Fatal(err)
	}
	w, inst, host := serveHarness(t, ipc.Exec{MaxResultBytes: 200 << 10})
	inst.mod = mod
	data := bytes.Repeat([]byte("rayhost!"), 100<<10/8) // 100 KiB, past the write buffer
	const at = 4096
	if !mod.Memory().Write(at, data) {
		t.Fatal("writing guest memory")
	}
	id := inst.exec.task.Put(1)
	put := func(pd abi.PutDataRequest) int64 { return w.serve(inst, abi.OpPutData, pd.Encode(nil)) }

	frames := make(chan []byte, 1)
	go func() {
		typ, p, err := host.Read(nil)
		if err != nil || typ != ipc.TypeCall {
			close(frames)
			return
		}
		frames <- append([]byte(nil), p...)
	}()
	if got := put(abi.PutDataRequest{ID: id, Codec: abi.CodecRaw, Ptr: at, Len: uint32(len(data))}); got != 0 {
		t.Fatalf("put_data: %d", got)
	}
	if err := w.conn.Write(ipc.TypeLog, nil); err != nil { // flush what is buffered
		t.Fatal(err)
	}
	frame, ok := <-frames
	var c ipc.Call
	if !ok || c.Decode(frame) != nil || c.Op != abi.OpPut || c.Task != inst.exec.task {
		t.Fatalf("the host got %+v", c)
	}
	want := (&abi.PutRequest{ID: id, Value: abi.Value{Codec: abi.CodecRaw, Data: data}}).Encode(nil)
	if !bytes.Equal(c.Payload, want) {
		t.Fatal("the put the host got is not the put of the guest's bytes")
	}

	size := mod.Memory().Size()
	for _, tc := range []struct {
		name string
		pd   abi.PutDataRequest
		want abi.ErrCode
	}{
		{"past the end of memory", abi.PutDataRequest{ID: id, Ptr: size - 10, Len: 11}, abi.ErrCodeBadRequest},
		{"wrapping around", abi.PutDataRequest{ID: id, Ptr: 1 << 31, Len: 1<<32 - 1}, abi.ErrCodeBadRequest},
		{"past the result limit", abi.PutDataRequest{ID: id, Ptr: 0, Len: 200<<10 + 1}, abi.ErrCodeTooLarge},
		{"a return ID, not a put's", abi.PutDataRequest{ID: inst.exec.task.Return(1), Ptr: at, Len: 8}, abi.ErrCodeBadRequest},
	} {
		if got := put(tc.pd); got != int64(tc.want) {
			t.Fatalf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

// memoryModule is a module with one exported memory of 4 pages.
func memoryModule() []byte {
	m := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	m = append(m, 5, 3, 1, 0, 4)                                   // memory section: one memory, min 4 pages
	m = append(m, 7, 10, 1, 6, 'm', 'e', 'm', 'o', 'r', 'y', 2, 0) // export "memory"
	return m
}
