package ray

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
)

type point struct {
	X, Y int
	Tag  string `json:"tag,omitempty"`
}

// roundTrip encodes v and decodes it back as T.
func roundTrip[T any](t *testing.T, v T) (abi.Value, T) {
	t.Helper()
	enc, err := encodeValue(v)
	if err != nil {
		t.Fatalf("encodeValue(%#v): %v", v, err)
	}
	got, err := decodeValue[T](enc)
	if err != nil {
		t.Fatalf("decodeValue(%s %q): %v", enc.Codec, enc.Data, err)
	}
	return enc, got
}

func TestCodecRawBytes(t *testing.T) {
	in := []byte{0, 1, 2, 0xff, 'x'}
	enc, got := roundTrip(t, in)
	if enc.Codec != abi.CodecRaw {
		t.Fatalf("codec = %v, want raw", enc.Codec)
	}
	// No copies on either side: the encoded value and the decoded slice are
	// the caller's bytes.
	if &enc.Data[0] != &in[0] || len(enc.Data) != len(in) {
		t.Error("encodeValue copied the []byte")
	}
	if &got[0] != &in[0] || len(got) != len(in) {
		t.Error("decodeValue copied the raw bytes")
	}

	t.Run("nil and empty", func(t *testing.T) {
		for _, b := range [][]byte{nil, {}} {
			enc, got := roundTrip(t, b)
			if enc.Codec != abi.CodecRaw || len(got) != 0 {
				t.Errorf("%#v: codec %v, decoded %#v", b, enc.Codec, got)
			}
		}
	})
	t.Run("in an any", func(t *testing.T) {
		// Remote arguments arrive as any; a []byte inside still travels raw.
		var a any = []byte("abc")
		enc, err := encodeValue(a)
		if err != nil || enc.Codec != abi.CodecRaw || string(enc.Data) != "abc" {
			t.Fatalf("encodeValue(any([]byte)) = %v %q, %v; want raw", enc.Codec, enc.Data, err)
		}
	})
	t.Run("raw into string", func(t *testing.T) {
		s, err := decodeValue[string](abi.Value{Codec: abi.CodecRaw, Data: []byte("héllo\x00")})
		if err != nil || s != "héllo\x00" {
			t.Fatalf("decodeValue[string](raw) = %q, %v", s, err)
		}
	})
	t.Run("raw into any", func(t *testing.T) {
		v, err := decodeValue[any](abi.Value{Codec: abi.CodecRaw, Data: []byte("xy")})
		if b, ok := v.([]byte); err != nil || !ok || string(b) != "xy" {
			t.Fatalf("decodeValue[any](raw) = %#v, %v; want []byte", v, err)
		}
	})
}

// Integer slices travel as codec "ints" and come back equal; a nil one
// stays JSON null (and nil); ints decode into other shapes through their
// JSON, and a number out of the target's range is ErrDecode.
func TestCodecInts(t *testing.T) {
	in := []int{0, -1, math.MaxInt64, math.MinInt64, 42}
	enc, got := roundTrip(t, in)
	if enc.Codec != abi.CodecInts || len(enc.Data) != 8*len(in) || !reflect.DeepEqual(got, in) {
		t.Fatalf("[]int: %v, %d bytes -> %v", enc.Codec, len(enc.Data), got)
	}
	if enc, got := roundTrip(t, []int32{1, -2}); enc.Codec != abi.CodecInts || !reflect.DeepEqual(got, []int32{1, -2}) {
		t.Fatalf("[]int32: %v -> %v", enc.Codec, got)
	}
	if enc, got := roundTrip(t, []int64(nil)); enc.Codec != abi.CodecJSON || got != nil {
		t.Fatalf("nil []int64: %v %q -> %v", enc.Codec, enc.Data, got)
	}
	if enc, got := roundTrip(t, []int{}); enc.Codec != abi.CodecInts || got == nil || len(got) != 0 {
		t.Fatalf("empty []int: %v -> %#v", enc.Codec, got)
	}
	v, _ := encodeValue([]int{1, 2, 3})
	if fs, err := decodeValue[[]float64](v); err != nil || !reflect.DeepEqual(fs, []float64{1, 2, 3}) {
		t.Fatalf("ints into []float64: %v, %v", fs, err)
	}
	if a, err := decodeValue[any](v); err != nil || !reflect.DeepEqual(a, []any{1.0, 2.0, 3.0}) {
		t.Fatalf("ints into any: %#v, %v", a, err)
	}
	big, _ := encodeValue([]int64{1 << 40})
	if _, err := decodeValue[[]int32](big); !errors.Is(err, ErrDecode) {
		t.Fatalf("an int64 beyond int32 into []int32: %v, want ErrDecode", err)
	}
	if _, err := decodeValue[[]int](abi.Value{Codec: abi.CodecInts, Data: make([]byte, 5)}); !errors.Is(err, ErrDecode) {
		t.Fatalf("5 bytes of ints: %v, want ErrDecode", err)
	}
}

func TestCodecJSON(t *testing.T) {
	t.Run("int", func(t *testing.T) {
		enc, got := roundTrip(t, -42)
		if enc.Codec != abi.CodecJSON || string(enc.Data) != "-42" || got != -42 {
			t.Fatalf("got %v %q -> %d", enc.Codec, enc.Data, got)
		}
	})
	t.Run("int64 extremes", func(t *testing.T) {
		for _, n := range []int64{math.MaxInt64, math.MinInt64} {
			if _, got := roundTrip(t, n); got != n {
				t.Errorf("%d came back as %d", n, got)
			}
		}
	})
	t.Run("string", func(t *testing.T) {
		in := "héllo \"world\"\n<tag>"
		enc, got := roundTrip(t, in)
		if enc.Codec != abi.CodecCBOR || got != in || jsonOf(t, enc) != `"héllo \"world\"\n<tag>"` {
			t.Fatalf("got %v %q -> %q", enc.Codec, enc.Data, got)
		}
	})
	t.Run("struct", func(t *testing.T) {
		in := point{X: 1, Y: -2, Tag: "p"}
		enc, got := roundTrip(t, in)
		if enc.Codec != abi.CodecCBOR || jsonOf(t, enc) != `{"X":1,"Y":-2,"tag":"p"}` || got != in {
			t.Fatalf("got %v %s -> %+v", enc.Codec, enc.Data, got)
		}
	})
	t.Run("pointer to struct", func(t *testing.T) {
		_, got := roundTrip(t, &point{X: 3})
		if got == nil || *got != (point{X: 3}) {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("slices", func(t *testing.T) {
		words := []string{"a", "b", "c"}
		if _, got := roundTrip(t, words); !reflect.DeepEqual(got, words) {
			t.Errorf("[]string came back as %#v", got)
		}
		nums := []float64{0.5, -1, 1e300}
		if _, got := roundTrip(t, nums); !reflect.DeepEqual(got, nums) {
			t.Errorf("[]float64 came back as %#v", got)
		}
		var nilSlice []int
		enc, got := roundTrip(t, nilSlice)
		if string(enc.Data) != "null" || got != nil {
			t.Errorf("nil []int: %s -> %#v", enc.Data, got)
		}
	})
	t.Run("map", func(t *testing.T) {
		m := map[string][]int{"a": {1}, "b": nil}
		if _, got := roundTrip(t, m); !reflect.DeepEqual(got, m) {
			t.Errorf("map came back as %#v", got)
		}
	})
	t.Run("named byte slice is CBOR", func(t *testing.T) {
		// Only the []byte type itself travels raw; a named type is a CBOR
		// byte string, whose JSON is base64 as encoding/json writes it,
		// and still round-trips.
		type blob []byte
		enc, got := roundTrip(t, blob("hi"))
		if enc.Codec != abi.CodecCBOR || jsonOf(t, enc) != `"aGk="` || string(got) != "hi" {
			t.Fatalf("got %v %s -> %q", enc.Codec, enc.Data, got)
		}
	})
	t.Run("number into float and any", func(t *testing.T) {
		v := abi.Value{Codec: abi.CodecJSON, Data: []byte("3")}
		if f, err := decodeValue[float64](v); err != nil || f != 3 {
			t.Errorf("decodeValue[float64](3) = %v, %v", f, err)
		}
		if a, err := decodeValue[any](v); err != nil || a != float64(3) {
			t.Errorf("decodeValue[any](3) = %#v, %v", a, err)
		}
	})
}

func TestCodecErrors(t *testing.T) {
	cases := []struct {
		name   string
		decode func(abi.Value) error
		v      abi.Value
	}{
		{"raw into int", decodeErr[int], abi.Value{Codec: abi.CodecRaw, Data: []byte("42")}},
		{"raw into struct", decodeErr[point], abi.Value{Codec: abi.CodecRaw, Data: []byte(`{"X":1}`)}},
		{"raw into []int", decodeErr[[]int], abi.Value{Codec: abi.CodecRaw, Data: []byte("x")}},
		{"json string into int", decodeErr[int], abi.Value{Codec: abi.CodecJSON, Data: []byte(`"42"`)}},
		{"json float into int", decodeErr[int], abi.Value{Codec: abi.CodecJSON, Data: []byte(`1.5`)}},
		{"json overflow into int8", decodeErr[int8], abi.Value{Codec: abi.CodecJSON, Data: []byte(`300`)}},
		{"bad json", decodeErr[point], abi.Value{Codec: abi.CodecJSON, Data: []byte(`{"X":`)}},
		{"empty json", decodeErr[int], abi.Value{Codec: abi.CodecJSON}},
		{"json trailing garbage", decodeErr[int], abi.Value{Codec: abi.CodecJSON, Data: []byte(`1 2`)}},
		{"unknown codec", decodeErr[[]byte], abi.Value{Codec: 3, Data: []byte("x")}},
		{"unknown codec 255", decodeErr[string], abi.Value{Codec: 255}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.decode(c.v)
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("decode = %v, want ErrDecode", err)
			}
			if errors.Is(err, ErrTaskFailed) {
				t.Fatalf("a decoding error must not look like a failed task: %v", err)
			}
		})
	}

	t.Run("unencodable values", func(t *testing.T) {
		for name, err := range map[string]error{
			"chan": encodeErr(make(chan int)),
			"func": encodeErr(func() {}),
			"NaN":  encodeErr(math.NaN()),
			"+Inf": encodeErr(math.Inf(1)),
			"ref with error": encodeErr(struct{ R ObjectRef[int] }{
				R: ObjectRef[int]{err: errors.New("submission failed")},
			}),
		} {
			if !errors.Is(err, ErrBadArgument) {
				t.Errorf("%s: encodeValue = %v, want ErrBadArgument", name, err)
			}
		}
	})
}

// jsonOf is the JSON a client gets for v.
func jsonOf(t *testing.T, v abi.Value) string {
	t.Helper()
	js, err := v.ToJSON()
	if err != nil || js.Codec != abi.CodecJSON {
		t.Fatalf("ToJSON(%v % x) = %v, %v", v.Codec, v.Data, js.Codec, err)
	}
	return string(js.Data)
}

func decodeErr[T any](v abi.Value) error { _, err := decodeValue[T](v); return err }
func encodeErr[T any](v T) error         { _, err := encodeValue(v); return err }

// A value with codec "error" is a failed task's: whatever the requested type,
// decoding it gives a *TaskError.
func TestCodecErrorValue(t *testing.T) {
	cases := []struct {
		name          string
		te            *abi.TaskError
		raw           []byte // used instead of te when set
		wantKind      string
		wantCancelled bool
		wantDied      bool
	}{
		{name: "application", te: &abi.TaskError{Kind: abi.ErrorApplication, Function: "f", Host: "h:1", Attempt: 2, Message: "boom", TaskID: "t1", Code: "E_BOOM"}, wantKind: "application"},
		{name: "panic with stack", te: &abi.TaskError{Kind: abi.ErrorPanic, Message: "oops", Stack: "goroutine 1"}, wantKind: "panic"},
		{name: "cancelled", te: &abi.TaskError{Kind: abi.ErrorCancelled, Message: "cancelled"}, wantKind: "cancelled", wantCancelled: true},
		{name: "worker died", te: &abi.TaskError{Kind: abi.ErrorWorkerDied}, wantKind: "worker_died", wantDied: true},
		{name: "dependency cancelled", te: &abi.TaskError{Kind: abi.ErrorDependency, Message: "arg 1",
			Cause: &abi.TaskError{Kind: abi.ErrorCancelled}}, wantKind: "dependency", wantCancelled: true},
		{name: "undecodable", raw: []byte("not json"), wantKind: "host"},
		{name: "no kind", raw: []byte(`{"message":"m"}`), wantKind: "host"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := abi.Value{Codec: abi.CodecError, Data: c.raw}
			if c.raw == nil {
				v = c.te.Encode()
			}
			for _, err := range []error{decodeErr[int](v), decodeErr[[]byte](v), decodeErr[string](v), decodeErr[any](v)} {
				var te *TaskError
				if !errors.As(err, &te) {
					t.Fatalf("decode = %#v, want a *TaskError", err)
				}
				if te.Kind != c.wantKind {
					t.Errorf("Kind = %q, want %q", te.Kind, c.wantKind)
				}
				if !errors.Is(err, ErrTaskFailed) {
					t.Error("errors.Is(err, ErrTaskFailed) = false")
				}
				if got := errors.Is(err, ErrTaskCancelled); got != c.wantCancelled {
					t.Errorf("errors.Is(err, ErrTaskCancelled) = %v, want %v", got, c.wantCancelled)
				}
				if got := errors.Is(err, ErrWorkerDied); got != c.wantDied {
					t.Errorf("errors.Is(err, ErrWorkerDied) = %v, want %v", got, c.wantDied)
				}
				if errors.Is(err, ErrDecode) {
					t.Error("a failed task's error must not be ErrDecode")
				}
				if c.te != nil {
					if te.Function != c.te.Function || te.Host != c.te.Host || te.Attempt != int(c.te.Attempt) ||
						te.Message != c.te.Message || te.Stack != c.te.Stack || te.TaskID != c.te.TaskID || te.Code != c.te.Code {
						t.Errorf("fields lost: got %+v from %+v", te, c.te)
					}
					if (te.Cause == nil) != (c.te.Cause == nil) {
						t.Errorf("Cause = %v, want one: %v", te.Cause, c.te.Cause != nil)
					}
				}
			}
		})
	}
}

func TestTaskErrorIsAndError(t *testing.T) {
	other := errors.New("other")
	cases := []struct {
		name string
		err  *TaskError
		is   map[error]bool
		msg  string
	}{
		{"application", &TaskError{Kind: "application", Function: "f", Attempt: 1, Message: "boom"},
			map[error]bool{ErrTaskFailed: true, ErrTaskCancelled: false, ErrWorkerDied: false, ErrGetTimeout: false, other: false},
			"task f (attempt 1) failed: application: boom"},
		{"cancelled", &TaskError{Kind: "cancelled", Function: "g", Host: "h:1", Message: "stop"},
			map[error]bool{ErrTaskFailed: true, ErrTaskCancelled: true, ErrWorkerDied: false},
			"task g on h:1 (attempt 0) failed: cancelled: stop"},
		{"worker died", &TaskError{Kind: "worker_died"},
			map[error]bool{ErrTaskFailed: true, ErrWorkerDied: true, ErrTaskCancelled: false},
			"task  (attempt 0) failed: worker_died: "},
		{"cause cancelled", &TaskError{Kind: "dependency", Function: "f", Message: "argument 1",
			Cause: &TaskError{Kind: "dependency", Cause: &TaskError{Kind: "cancelled", Function: "h"}}},
			map[error]bool{ErrTaskFailed: true, ErrTaskCancelled: true, ErrWorkerDied: false},
			"task f (attempt 0) failed: dependency: argument 1: task  (attempt 0) failed: dependency: : task h (attempt 0) failed: cancelled: "},
		{"cause died is not died", &TaskError{Kind: "dependency", Cause: &TaskError{Kind: "worker_died"}},
			map[error]bool{ErrTaskFailed: true, ErrWorkerDied: false, ErrTaskCancelled: false}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for target, want := range c.is {
				if got := errors.Is(c.err, target); got != want {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", c.err, target, got, want)
				}
			}
			if c.msg != "" && c.err.Error() != c.msg {
				t.Errorf("Error() = %q\n           want %q", c.err.Error(), c.msg)
			}
		})
	}
	if taskErrorFrom(nil) != nil {
		t.Error("taskErrorFrom(nil) != nil")
	}
}

// Benchmarks of the value codec: what a remote function pays per argument
// and per result.
func BenchmarkValueCodec(b *testing.B) {
	b.Run("bytes-1KiB", func(b *testing.B) { benchBytes(b, 1<<10) })
	b.Run("bytes-1MiB", func(b *testing.B) { benchBytes(b, 1<<20) })
	b.Run("int", func(b *testing.B) { benchCodec(b, 123456789) })
	b.Run("struct", func(b *testing.B) { benchCodec(b, point{X: 3, Y: -4, Tag: "origin"}) })
	b.Run("strings-8", func(b *testing.B) {
		benchCodec(b, strings.Fields("the quick brown fox jumps over the lazy"))
	})
}

// benchBytes: []byte travels raw, so both directions are free of copies
// whatever the size; MB/s grows with the size.
func benchBytes(b *testing.B, n int) {
	in := make([]byte, n)
	b.SetBytes(int64(n))
	b.ReportAllocs()
	for b.Loop() {
		v, err := encodeValue(in)
		if err != nil {
			b.Fatal(err)
		}
		out, err := decodeValue[[]byte](v)
		if err != nil || len(out) != n {
			b.Fatal(err)
		}
	}
}

// benchCodec: JSON values; SetBytes is the encoded size.
func benchCodec[T any](b *testing.B, in T) {
	v, err := encodeValue(in)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(v.Data)))
	b.ReportAllocs()
	for b.Loop() {
		v, err := encodeValue(in)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := decodeValue[T](v); err != nil {
			b.Fatal(err)
		}
	}
}
