package abi

import (
	"math"
	"reflect"
	"testing"

	"github.com/rayhost/rayhost/internal/ids"
)

// message is what every ABI message type implements.
type message interface {
	Encode(b []byte) []byte
	Decode(b []byte) error
}

// loneValue adapts EncodeValue/DecodeValue (the payload of OpYield) to
// message.
type loneValue struct{ V Value }

func (l *loneValue) Encode(b []byte) []byte { return EncodeValue(b, l.V) }
func (l *loneValue) Decode(b []byte) (err error) {
	l.V, err = DecodeValue(b)
	return err
}

// Fixed IDs, so that failures are reproducible.
var (
	testTask  = ids.TaskID{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10}
	testTask2 = testTask.Child(7)
	testRet0  = testTask.Return(0) // index 1
	testRet5  = testTask2.Return(5)
	testPut0  = testTask.Put(0) // index 1<<31
	testPut9  = testTask2.Put(9)
)

// zeroIndexID is an ObjectID of a real task with index 0: never valid.
func zeroIndexID() ids.ObjectID {
	var o ids.ObjectID
	copy(o[:], testTask[:])
	return o
}

// equalMsg compares two decoded messages structurally. Unlike
// reflect.DeepEqual it treats a nil slice and an empty slice alike (decoders
// return non-nil empty slices; hand-built messages often hold nil) and
// compares floats by their bits, so NaN equals the same NaN.
func equalMsg(a, b any) bool {
	return equalValue(reflect.ValueOf(a), reflect.ValueOf(b))
}

func equalValue(a, b reflect.Value) bool {
	if a.IsValid() != b.IsValid() {
		return false
	}
	if !a.IsValid() {
		return true
	}
	if a.Type() != b.Type() {
		return false
	}
	switch a.Kind() {
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return equalValue(a.Elem(), b.Elem())
	case reflect.Struct:
		for i := range a.NumField() {
			if !equalValue(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Slice, reflect.Array:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !equalValue(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Float32, reflect.Float64:
		return math.Float64bits(a.Float()) == math.Float64bits(b.Float())
	case reflect.String:
		return a.String() == b.String()
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return a.Uint() == b.Uint()
	}
	panic("equalMsg: unsupported kind " + a.Kind().String())
}

func TestEqualMsg(t *testing.T) {
	nan := math.NaN()
	cases := []struct {
		name string
		a, b any
		want bool
	}{
		{"nil vs empty slice", GetReply{}, GetReply{Values: []Value{}}, true},
		{"nil vs empty bytes", Value{Data: nil}, Value{Data: []byte{}}, true},
		{"different bytes", Value{Data: []byte("a")}, Value{Data: []byte("b")}, false},
		{"different codec", Value{Codec: CodecRaw}, Value{Codec: CodecJSON}, false},
		{"same NaN", Custom{Amount: nan}, Custom{Amount: nan}, true},
		{"-0 vs +0", Custom{Amount: math.Copysign(0, -1)}, Custom{Amount: 0}, false},
		{"different ids", Ref{ID: testRet0}, Ref{ID: testRet5}, false},
		{"different types", GetReply{}, Result{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := equalMsg(c.a, c.b); got != c.want {
				t.Errorf("equalMsg(%+v, %+v) = %v, want %v", c.a, c.b, got, c.want)
			}
		})
	}
}
