package ray

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// ObjectRef is a future for a value of type T: the result of a Remote call
// or of Put. Pass it to Get, Wait, or as an argument of another Remote call
// (the task then receives the value). An ObjectRef inside a value (a slice
// or struct field) travels as a reference the receiving task may Get.
type ObjectRef[T any] struct {
	id    ids.ObjectID
	owner string
	err   error // set when the submission itself failed
	// h is shared by the copies of this ref: once none is reachable, its
	// reference is given back to the host (release.go).
	h *handle
}

// ID is the hex form of the object's ID.
func (r ObjectRef[T]) ID() string { return r.id.String() }

// Owner is the address of the host that owns the object.
func (r ObjectRef[T]) Owner() string { return r.owner }

// Err reports whether making the ref failed (an argument of the wrong type,
// for example). Get returns the same error.
func (r ObjectRef[T]) Err() error { return r.err }

func (r ObjectRef[T]) String() string { return "ObjectRef(" + r.id.String() + ")" }

func (r ObjectRef[T]) abiRef() abi.Ref        { return abi.Ref{ID: r.id, Owner: r.owner} }
func (r ObjectRef[T]) refErr() error          { return r.err }
func (r ObjectRef[T]) refHandle() *handle     { return r.h }
func (r ObjectRef[T]) elemType() reflect.Type { return reflect.TypeFor[T]() }

// AnyRef is an untyped view of a ref: every ObjectRef[T] and every
// *ObjectRefGenerator[T] is one. WaitAny, Cancel and Release take it.
type AnyRef interface {
	ID() string
	abiRef() abi.Ref
	refErr() error
	elemType() reflect.Type
	refHandle() *handle
}

type refJSON struct {
	ObjectID string `json:"object_id"`
	Owner    string `json:"owner,omitempty"`
}

// MarshalJSON encodes the ref as {"object_id": "...", "owner": "..."}, and
// the zero ObjectRef as null.
func (r ObjectRef[T]) MarshalJSON() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.id.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(refJSON{ObjectID: r.id.String(), Owner: r.owner})
}

// UnmarshalJSON decodes the form MarshalJSON writes.
func (r *ObjectRef[T]) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*r = ObjectRef[T]{}
		return nil
	}
	var j refJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	id, err := ids.ParseObjectID(j.ObjectID)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrDecode, err)
	}
	*r = ObjectRef[T]{id: id, owner: j.Owner, h: track(id, 1)}
	return nil
}

// MarshalCBOR encodes the ref as its tag (abi.TagObjectRef, ABI.md §9),
// and the zero ObjectRef as null.
func (r ObjectRef[T]) MarshalCBOR() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.id.IsZero() {
		return []byte{cborNull}, nil
	}
	return abi.AppendRefCBOR(nil, r.abiRef()), nil
}

// UnmarshalCBOR decodes the form MarshalCBOR writes.
func (r *ObjectRef[T]) UnmarshalCBOR(b []byte) error {
	if isCBORNull(b) {
		*r = ObjectRef[T]{}
		return nil
	}
	ref, err := abi.DecodeRefCBOR(b)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrDecode, err)
	}
	if ref.ID.IsZero() { // the zero ref, as MarshalCBOR writes it
		*r = ObjectRef[T]{}
		return nil
	}
	*r = ObjectRef[T]{id: ref.ID, owner: ref.Owner, h: track(ref.ID, 1)}
	return nil
}

// Refs returns refs as AnyRef values (what WaitAny and Cancel take), for code that
// handles refs of several element types together.
func Refs[T any](refs []ObjectRef[T]) []AnyRef {
	out := make([]AnyRef, len(refs))
	for i, r := range refs {
		out[i] = r
	}
	return out
}
