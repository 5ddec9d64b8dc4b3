package abi

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"testing"
)

func TestIntsRoundTrip(t *testing.T) {
	for _, xs := range [][]int64{{}, {0}, {1, -1, math.MaxInt64, math.MinInt64, 42}} {
		data := AppendInts(nil, xs)
		got, err := DecodeInts[int64](data, math.MinInt64, math.MaxInt64)
		if err != nil || len(got) != len(xs) {
			t.Fatalf("%v: %v, %v", xs, got, err)
		}
		for i := range xs {
			if got[i] != xs[i] {
				t.Fatalf("%v: got %v", xs, got)
			}
		}
		js, err := Value{Codec: CodecInts, Data: data}.ToJSON()
		if err != nil || js.Codec != CodecJSON {
			t.Fatalf("ToJSON: %v %v", js, err)
		}
		want, _ := json.Marshal(xs)
		if !bytes.Equal(js.Data, want) {
			t.Fatalf("ToJSON = %s, encoding/json says %s", js.Data, want)
		}
	}
	if _, err := DecodeInts[int32](AppendInts(nil, []int64{1 << 40}), math.MinInt32, math.MaxInt32); err == nil {
		t.Fatal("an int64 beyond int32 decoded into []int32")
	}
	if _, err := DecodeInts[int](make([]byte, 7), math.MinInt64, math.MaxInt64); !errors.Is(err, ErrInts) {
		t.Fatalf("7 bytes: %v, want ErrInts", err)
	}
	if _, err := (Value{Codec: CodecInts, Data: make([]byte, 9)}).ToJSON(); !errors.Is(err, ErrInts) {
		t.Fatalf("ToJSON of 9 bytes: %v, want ErrInts", err)
	}
}

// MaxIntsJSON bounds the JSON of any ints value, and never wraps: a size a
// peer lies about is as large as can be (found by an attack review).
func TestMaxIntsJSON(t *testing.T) {
	worst := AppendInts(nil, []int64{math.MinInt64, math.MinInt64})
	js, _ := AppendIntsJSON(nil, worst)
	if int64(len(js)) > MaxIntsJSON(int64(len(worst))) {
		t.Fatalf("the JSON of %d bytes takes %d, more than the bound %d", len(worst), len(js), MaxIntsJSON(int64(len(worst))))
	}
	for _, n := range []int64{1 << 62, math.MaxInt64, -8} {
		if got := MaxIntsJSON(n); got != math.MaxInt64 {
			t.Errorf("MaxIntsJSON(%d) = %d, want MaxInt64", n, got)
		}
	}
}

// A module that does not list the codec gets JSON; one that does, the
// bytes; json, raw and error are for every module.
func TestDescriptionForGuest(t *testing.T) {
	v := Value{Codec: CodecInts, Data: AppendInts(nil, []int{3, 4})}
	old, fresh := &Description{}, &Description{Codecs: []string{"ints"}}
	if got, err := old.ForGuest(v); err != nil || got.Codec != CodecJSON || string(got.Data) != "[3,4]" {
		t.Fatalf("for a module without the codec: %v %v", got, err)
	}
	if got, err := fresh.ForGuest(v); err != nil || got.Codec != CodecInts {
		t.Fatalf("for a module with it: %v %v", got, err)
	}
	for _, c := range []Codec{CodecJSON, CodecRaw, CodecError} {
		if !old.Speaks(c) {
			t.Fatalf("%v not spoken by every module", c)
		}
	}
}

// FuzzIntsJSON: any bytes either are whole integers, whose JSON (whole or
// streamed in pieces cut anywhere) encoding/json reads back as the same
// numbers, or fail with ErrInts both ways.
func FuzzIntsJSON(f *testing.F) {
	f.Add(AppendInts(nil, []int64{1, -2, math.MaxInt64}), uint8(3))
	f.Add([]byte{1, 2, 3}, uint8(1))
	f.Add([]byte{}, uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		whole, err := AppendIntsJSON(nil, data)
		var streamed []byte
		w := NewIntsJSONWriter(func(b []byte) error { streamed = append(streamed, b...); return nil })
		step := int(cut)%9 + 1
		for i := 0; i < len(data); i += step {
			if werr := w.Write(data[i:min(i+step, len(data))]); werr != nil {
				t.Fatal(werr)
			}
		}
		cerr := w.Close()
		if len(data)%8 != 0 {
			if !errors.Is(err, ErrInts) || !errors.Is(cerr, ErrInts) {
				t.Fatalf("%d bytes: %v / %v, want ErrInts", len(data), err, cerr)
			}
			return
		}
		if err != nil || cerr != nil {
			t.Fatalf("%d bytes: %v / %v", len(data), err, cerr)
		}
		if !bytes.Equal(whole, streamed) {
			t.Fatalf("streamed %s, whole %s", streamed, whole)
		}
		var back []int64
		if err := json.Unmarshal(whole, &back); err != nil {
			t.Fatalf("encoding/json rejects %s: %v", whole, err)
		}
		xs, err := DecodeInts[int64](data, math.MinInt64, math.MaxInt64)
		if err != nil || len(xs) != len(back) {
			t.Fatalf("%v vs %v (%v)", xs, back, err)
		}
		for i := range xs {
			if xs[i] != back[i] {
				t.Fatalf("%v vs %v", xs, back)
			}
		}
	})
}
