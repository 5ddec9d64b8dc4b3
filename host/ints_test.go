package host_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/testutil"
)

// TestIntsCodec: integer slices travel between guests as 8-byte integers
// (codec "ints") and reach clients as JSON, whole and streamed, small (in
// memory) and large (in the store); a guest reads them as []int, or as
// JSON numbers into an any, and a client's JSON array is read as before.
func TestIntsCodec(t *testing.T) {
	h := testutil.StartHost(t, nil)
	c := client.New(h.Addr())
	mod := testutil.Register(t, c, guestPkg)
	ctx := t.Context()
	for _, n := range []int{3, 20_000} { // 20,000 ints are 160 KB: beyond the inline limit
		want := make([]int, n)
		for i := range want {
			want[i] = (i - n/2) * 1_000_003
		}
		want[0] = -1 << 63
		ref, err := c.Submit(ctx, mod, "ints_make", n)
		if err != nil {
			t.Fatal(err)
		}
		var got []int
		if err := c.Get(ctx, ref, &got); err != nil {
			t.Fatalf("Get of %d ints: %v", n, err)
		}
		if !equalInts(got, want) {
			t.Fatalf("Get of %d ints: got %d ints, first %v", n, len(got), got[:min(3, len(got))])
		}
		var buf bytes.Buffer
		codec, err := c.GetStream(ctx, ref, &buf)
		if err != nil {
			t.Fatalf("GetStream of %d ints: %v", n, err)
		}
		wantJSON, _ := json.Marshal(want)
		if codec != "json" || !bytes.Equal(buf.Bytes(), wantJSON) {
			t.Fatalf("GetStream of %d ints: codec %q, %d bytes (want json, %d bytes)", n, codec, buf.Len(), len(wantJSON))
		}
		wantSum := n
		for _, x := range want[1:] {
			wantSum += x
		}
		for fn, want := range map[string]int{"ints_sum": wantSum, "ints_len_any": n} {
			r, err := c.Submit(ctx, mod, fn, ref)
			if err != nil {
				t.Fatal(err)
			}
			var out int
			if err := c.Get(ctx, r, &out); err != nil || out != want {
				t.Fatalf("%s of %d ints: %d, %v; want %d", fn, n, out, err, want)
			}
		}
	}
	// A client's JSON array, as an argument.
	r, err := c.Submit(ctx, mod, "ints_sum", []int{5, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	var out int
	if err := c.Get(ctx, r, &out); err != nil || out != 6 {
		t.Fatalf("ints_sum of a client's [5,1,2]: %d, %v; want 6", out, err)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestIntsCodecMessageLimit: a Get counts an "ints" value at the size of
// its JSON, not of its bytes: one whose JSON may not fit one message is
// refused before it is converted (use GetStream, which streams it).
func TestIntsCodecMessageLimit(t *testing.T) {
	h := testutil.StartHost(t, func(c *host.Config) { c.MaxMessageBytes = 8 << 20 }) // Get carries 7 MiB
	c := client.New(h.Addr())
	mod := testutil.Register(t, c, guestPkg)
	ctx := t.Context()
	const n = 375_000 // 3 MB of ints, whose JSON may take up to 7.9 MB
	ref, err := c.Submit(ctx, mod, "ints_make", n)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	err = c.Get(ctx, ref, &got)
	if !errors.Is(err, client.ErrResourceExhausted) || !strings.Contains(err.Error(), "GetStream") {
		t.Fatalf("Get of ints whose JSON exceeds a message: %v, want resource exhausted naming GetStream", err)
	}
	var buf bytes.Buffer
	if _, err := c.GetStream(ctx, ref, &buf); err != nil {
		t.Fatalf("GetStream: %v", err)
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil || len(got) != n {
		t.Fatalf("GetStream gave %d ints, %v", len(got), err)
	}
}
