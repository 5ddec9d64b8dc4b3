package ray

import (
	"encoding/json"
	"strconv"
	"testing"
)

// BenchmarkCodec compares, per shape, an encode and a decode of the value
// as JSON (encoding/json, or the fast path for integers), as CBOR, and as
// the SDK does it (encodeValue and decodeValue, which pick one). Run it
// under wasm to see what guests pay (docs/RATIONALE.md):
//
//	GOOS=wasip1 GOARCH=wasm go test -c -o /tmp/ray.wasm ./guest-sdk/ray
//	wazero run /tmp/ray.wasm -test.run '^$' -test.bench BenchmarkCodec -test.benchmem
func BenchmarkCodec(b *testing.B) {
	type small struct {
		Name  string  `json:"name"`
		Count int     `json:"count"`
		Score float64 `json:"score"`
		OK    bool    `json:"ok"`
	}
	strs := make([]string, 100)
	floats := make(map[string]float64, 100)
	for i := range strs {
		strs[i] = "item-" + strconv.Itoa(i)
		floats["key-"+strconv.Itoa(i)] = float64(i) * 1.25
	}
	benchShape(b, "int", 123456789)
	benchShape(b, "string", "a short string of forty characters or so")
	benchShape(b, "struct", small{Name: "point", Count: 42, Score: 0.75, OK: true})
	benchShape(b, "strings100", strs)
	benchShape(b, "mapfloat100", floats)
}

func benchShape[T any](b *testing.B, name string, v T) {
	b.Run(name+"/json", func(b *testing.B) {
		for b.Loop() {
			data, ok := fastEncode(&v)
			if !ok {
				var err error
				if data, err = json.Marshal(v); err != nil {
					b.Fatal(err)
				}
			}
			var out T
			if !fastDecode(data, &out) {
				if err := json.Unmarshal(data, &out); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run(name+"/cbor", func(b *testing.B) {
		for b.Loop() {
			data, err := cborEnc.Marshal(&v)
			if err != nil {
				b.Fatal(err)
			}
			var out T
			if err := cborDec.Unmarshal(data, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run(name+"/sdk", func(b *testing.B) {
		for b.Loop() {
			enc, err := encodeValue(v)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := decodeValue[T](enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
