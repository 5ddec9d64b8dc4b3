package ray

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
)

// The fast path must agree with encoding/json byte for byte when encoding,
// and value for value when decoding.
func TestFastJSONMatchesEncodingJSON(t *testing.T) {
	values := []any{
		0, -1, math.MaxInt64, math.MinInt64, int64(42),
		[]int{}, []int(nil), []int{1, -2, 300000}, []int64{math.MinInt64, 0, math.MaxInt64}, []int32{math.MinInt32, math.MaxInt32},
	}
	for _, v := range values {
		t.Run(reflect.TypeOf(v).String(), func(t *testing.T) {
			want, _ := json.Marshal(v)
			p := reflect.New(reflect.TypeOf(v))
			p.Elem().Set(reflect.ValueOf(v))
			got, ok := fastEncode(p.Interface())
			if !ok || string(got) != string(want) {
				t.Fatalf("fastEncode(%v) = %s, %v; encoding/json says %s", v, got, ok, want)
			}
			q := reflect.New(reflect.TypeOf(v))
			if !fastDecode(want, q.Interface()) || !reflect.DeepEqual(q.Elem().Interface(), v) {
				t.Fatalf("fastDecode(%s) = %v", want, q.Elem().Interface())
			}
		})
	}
}

func TestFastJSONDefersWhatItDoesNotKnow(t *testing.T) {
	tests := []struct {
		in   string
		into any
	}{
		{"1.5", new(int)}, {"1e3", new(int)}, {"01", new(int)}, {`"1"`, new(int)}, {"[1,]", new([]int)},
		{"[1 2]", new([]int)}, {"[", new([]int)}, {"9223372036854775808", new(int64)}, {"[2147483648]", new([]int32)},
		{"[1] x", new([]int)}, {"-", new(int)}, {"{}", new([]int)}, {"[1]", new([]string)},
	}
	for _, tt := range tests {
		if fastDecode([]byte(tt.in), tt.into) {
			t.Errorf("fastDecode(%q) into %T accepted it", tt.in, tt.into)
		}
	}
	// And what it accepts, whitespace included, encoding/json reads alike.
	for _, in := range []string{" [ 1 , 2 ] ", "null", "[]", " -7 "} {
		var fast, slow []int
		if in == " -7 " {
			var f, s int
			if !fastDecode([]byte(in), &f) || json.Unmarshal([]byte(in), &s) != nil || f != s {
				t.Errorf("%q: fast %d, json %d", in, f, s)
			}
			continue
		}
		if !fastDecode([]byte(in), &fast) || json.Unmarshal([]byte(in), &slow) != nil || !reflect.DeepEqual(fast, slow) {
			t.Errorf("%q: fast %v, json %v", in, fast, slow)
		}
	}
}

func BenchmarkCodecInts(b *testing.B) {
	xs := make([]int, 100_000)
	for i := range xs {
		xs[i] = i * 7919 % 1_000_003
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(xs) * 8))
	for b.Loop() {
		v, _ := encodeValue(xs)
		if _, err := decodeValue[[]int](v); err != nil {
			b.Fatal(err)
		}
	}
}
