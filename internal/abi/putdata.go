package abi

import "github.com/rayhost/rayhost/internal/ids"

// OpPutData (added within v1, guest-sdk/ABI.md §5, "put_data") is a put
// whose value's bytes stay where they are in the guest's memory: the
// request names them (Ptr, Len), and the worker reads them there and
// forwards an OpPut, so a large Put is not first copied into a request.
// A worker that predates it answers ErrCodeUnknownOp; the guest then
// sends OpPut.
const OpPutData Op = 17

// PutDataRequest is op OpPutData's request.
type PutDataRequest struct {
	ID    ids.ObjectID // a Put ID of the calling task, as for OpPut
	Codec Codec
	Ptr   uint32 // where the value's bytes are in the guest's memory
	Len   uint32
}

func (v *PutDataRequest) Encode(b []byte) []byte {
	e := Encoder{B: b}
	e.Raw(v.ID[:])
	e.Byte(byte(v.Codec))
	e.Uvarint(uint64(v.Ptr))
	e.Uvarint(uint64(v.Len))
	return e.B
}

func (v *PutDataRequest) Decode(b []byte) error {
	d := NewDecoder(b)
	v.ID = d.ObjectID()
	v.Codec = Codec(d.Byte())
	v.Ptr = d.Uint32()
	v.Len = d.Uint32()
	if d.Err() == nil && !v.ID.IsPut() {
		d.fail("put id")
	}
	return d.Done()
}

// PutHead is the start of the PutRequest that carries the same put: the
// encoding of PutRequest{ID, Value{Codec, Data}} is PutHead followed by
// the Len bytes of Data.
func (v *PutDataRequest) PutHead(b []byte) []byte {
	e := Encoder{B: b}
	e.Raw(v.ID[:])
	e.Byte(byte(v.Codec))
	e.Uvarint(uint64(v.Len))
	return e.B
}
