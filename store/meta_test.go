package store

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/rayhost/rayhost/internal/ids"
)

func sampleRecords() map[string]record {
	task := ids.TaskID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	created := time.Date(2025, 6, 1, 12, 0, 0, 999_999_999, time.UTC)
	return map[string]record{
		"inline": {meta: Meta{Size: 5, Codec: CodecJSON, Owner: "10.1.2.3:7000", Task: task, Created: created},
			inline: true, data: []byte("hello")},
		"inline-empty": {meta: Meta{Size: 0, Created: time.Unix(0, 0).UTC()}, inline: true, data: []byte{}},
		"chunked": {meta: Meta{Size: 5<<20 + 1, Codec: CodecRaw, Owner: "h", Created: created},
			gen: 1 << 40, chunkSize: 1 << 20},
		"file": {meta: Meta{Size: 100 << 20, Codec: CodecRaw, Owner: "h", Created: created},
			file: true, gen: 1<<40 + 7, sum: 0xdeadbeef},
		"old-time": {meta: Meta{Size: 100_000, Created: time.Date(1900, 1, 1, 0, 0, 0, 1, time.UTC)},
			gen: 0, chunkSize: 60 << 10},
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for name, rec := range sampleRecords() {
		t.Run(name, func(t *testing.T) {
			enc := appendRecord(nil, &rec)
			got, err := decodeRecord(enc)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !got.meta.Created.Equal(rec.meta.Created) {
				t.Errorf("Created = %v, want %v", got.meta.Created, rec.meta.Created)
			}
			gm, wm := got.meta, rec.meta
			gm.Created, wm.Created = time.Time{}, time.Time{}
			if gm != wm || got.inline != rec.inline || got.gen != rec.gen || got.chunkSize != rec.chunkSize ||
				got.file != rec.file || got.sum != rec.sum ||
				!bytes.Equal(got.data, rec.data) {
				t.Errorf("decoded %+v, want %+v", got, rec)
			}
		})
	}
}

func TestRecordChunks(t *testing.T) {
	tests := []struct {
		size, chunk int64
		chunks      uint32
		last        int64
	}{
		{1, 10, 1, 1},
		{10, 10, 1, 10},
		{11, 10, 2, 1},
		{20, 10, 2, 10},
		{0, 10, 0, 0},
	}
	for _, tc := range tests {
		r := record{meta: Meta{Size: tc.size}, chunkSize: tc.chunk}
		if got := r.chunks(); got != tc.chunks {
			t.Errorf("size %d chunk %d: chunks = %d, want %d", tc.size, tc.chunk, got, tc.chunks)
		}
		if tc.chunks > 0 {
			if got := r.chunkLen(tc.chunks - 1); got != tc.last {
				t.Errorf("size %d chunk %d: last chunk = %d, want %d", tc.size, tc.chunk, got, tc.last)
			}
		}
	}
}

func TestRecordCorrupt(t *testing.T) {
	recs := sampleRecords()
	inline := recs["inline"]
	chunked := recs["chunked"]
	inlineEnc := appendRecord(nil, &inline)
	chunkedEnc := appendRecord(nil, &chunked)
	zeroChunk := chunked
	zeroChunk.chunkSize = 0

	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"version-0", append([]byte{0}, inlineEnc[1:]...)},
		{"version-2", append([]byte{2}, inlineEnc[1:]...)},
		{"unknown-flag", append([]byte{1, 0x80}, inlineEnc[2:]...)},
		{"inline-short", inlineEnc[:len(inlineEnc)-1]},
		{"inline-long", append(bytes.Clone(inlineEnc), 'x')},
		{"chunked-trailing", append(bytes.Clone(chunkedEnc), 0)},
		{"chunked-truncated", chunkedEnc[:len(chunkedEnc)-1]},
		{"zero-chunk-size", appendRecord(nil, &zeroChunk)},
		{"header-only", chunkedEnc[:10]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeRecord(tc.b)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("decode = %v, want ErrCorrupt", err)
			}
		})
	}
	// Every proper prefix of a chunked record is corrupt.
	for n := range len(chunkedEnc) {
		if _, err := decodeRecord(chunkedEnc[:n]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("prefix of %d bytes: err = %v, want ErrCorrupt", n, err)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, rec := range sampleRecords() {
		f.Add(appendRecord(nil, &rec))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeRecord(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again, err := decodeRecord(appendRecord(nil, &rec))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if again.meta.Size != rec.meta.Size || again.gen != rec.gen || again.file != rec.file || again.sum != rec.sum ||
			!bytes.Equal(again.data, rec.data) {
			t.Fatalf("re-decode differs: %+v vs %+v", again, rec)
		}
		if !rec.inline && rec.chunks() > 0 {
			_ = rec.chunkLen(rec.chunks() - 1)
		}
	})
}
