package host_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/testutil"
)

// TestCBORCodec: a struct a guest returns travels as CBOR (codec "cbor")
// and reaches clients as its JSON, whole and streamed, small (in memory)
// and large (in the store); the ref inside it names an object that stays
// alive after the task that put it ended; another guest reads the value
// (from CBOR) and the ref's object, and a client's JSON of the same shape
// is read as before.
func TestCBORCodec(t *testing.T) {
	h := testutil.StartHost(t, nil)
	c := client.New(h.Addr())
	mod := testutil.Register(t, c, guestPkg)
	ctx := t.Context()
	type record struct {
		Name   string             `json:"name"`
		Words  []string           `json:"words"`
		Scores map[string]float64 `json:"scores"`
		Data   client.ObjectRef   `json:"data"`
	}
	for _, n := range []int{3, 20_000} { // 20,000 words are beyond the inline limit
		name := fmt.Sprint("rec", n)
		ref, err := c.Submit(ctx, mod, "cbor_make", name, n)
		if err != nil {
			t.Fatal(err)
		}
		var got record
		if err := c.Get(ctx, ref, &got); err != nil {
			t.Fatalf("Get of %d words: %v", n, err)
		}
		if got.Name != name || len(got.Words) != n || got.Words[n-1] != fmt.Sprint("w", n-1) ||
			got.Scores["a"] != 0.5 || got.Scores["b"] != -2 || got.Data.ID == "" {
			t.Fatalf("Get of %d words: %s, %d words, %v, data %q", n, got.Name, len(got.Words), got.Scores, got.Data.ID)
		}
		var data []byte
		if err := c.Get(ctx, got.Data, &data); err != nil || string(data) != name {
			t.Fatalf("the nested ref's object: %q, %v", data, err)
		}
		var buf bytes.Buffer
		codec, err := c.GetStream(ctx, ref, &buf)
		if err != nil {
			t.Fatalf("GetStream of %d words: %v", n, err)
		}
		var streamed record
		if err := json.Unmarshal(buf.Bytes(), &streamed); codec != "json" || err != nil || len(streamed.Words) != n || streamed.Data.ID != got.Data.ID {
			t.Fatalf("GetStream of %d words: codec %q, %v, %d words", n, codec, err, len(streamed.Words))
		}
		want := fmt.Sprintf("%s %d -1.5 %s", name, n, name)
		r, err := c.Submit(ctx, mod, "cbor_read", ref)
		if err != nil {
			t.Fatal(err)
		}
		var out string
		if err := c.Get(ctx, r, &out); err != nil || out != want {
			t.Fatalf("cbor_read of the guest's record: %q, %v; want %q", out, err, want)
		}
		// The same record as a client's JSON.
		r, err = c.Submit(ctx, mod, "cbor_read", got)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Get(ctx, r, &out); err != nil || out != want {
			t.Fatalf("cbor_read of a client's record: %q, %v; want %q", out, err, want)
		}
	}
}

// TestAttackBadCBOR: a guest that bypasses the SDK puts "cbor" values the
// host cannot convert (nesting a million deep, an array of 2^63 items, a
// forged ref tag, a NaN): a client's Get of one is invalid_argument saying
// it has no JSON form, a guest given one fails to decode it, and the host
// keeps serving.
func TestAttackBadCBOR(t *testing.T) {
	c, mod, _ := attackHost(t)
	guest := testutil.Register(t, c, guestPkg)
	ctx := t.Context()
	for _, which := range []string{"deep", "huge", "forged", "nan"} {
		var inner client.ObjectRef
		mustCall(t, c, mod, "bad_cbor", &inner, which)
		var v any
		err := c.Get(ctx, inner, &v)
		if !errors.Is(err, client.ErrInvalidArgument) || !strings.Contains(err.Error(), "no JSON form") {
			t.Fatalf("%s: Get = %v, %v; want invalid argument saying no JSON form", which, v, err)
		}
		var buf bytes.Buffer
		if _, err := c.GetStream(ctx, inner, &buf); !errors.Is(err, client.ErrInvalidArgument) || buf.Len() > 0 {
			t.Fatalf("%s: GetStream = %d bytes, %v; want invalid argument", which, buf.Len(), err)
		}
		r, err := c.Submit(ctx, guest, "cbor_read", inner)
		if err != nil {
			t.Fatal(err)
		}
		var out string
		if err := c.Get(ctx, r, &out); err == nil {
			t.Fatalf("%s: a guest read it: %q", which, out)
		}
	}
	attackerServes(t, c, mod)
}

// TestCBORCodecMessageLimit: a Get counts a "cbor" value at the most its
// JSON may take, not at its bytes: one whose JSON may not fit one message
// is refused before it is converted (GetStream converts it).
func TestCBORCodecMessageLimit(t *testing.T) {
	h := testutil.StartHost(t, func(c *host.Config) { c.MaxMessageBytes = 8 << 20 }) // Get carries 7 MiB
	c := client.New(h.Addr())
	mod := testutil.Register(t, c, guestPkg)
	ctx := t.Context()
	const n = 120_000 // ≈ 1 MB of CBOR, whose JSON may take up to 9 MB
	ref, err := c.Submit(ctx, mod, "cbor_make", "big", n)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Words []string `json:"words"`
	}
	err = c.Get(ctx, ref, &got)
	if !errors.Is(err, client.ErrResourceExhausted) || !strings.Contains(err.Error(), "GetStream") {
		t.Fatalf("Get of cbor whose JSON may exceed a message: %v, want resource exhausted naming GetStream", err)
	}
	var buf bytes.Buffer
	if _, err := c.GetStream(ctx, ref, &buf); err != nil {
		t.Fatalf("GetStream: %v", err)
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil || len(got.Words) != n {
		t.Fatalf("GetStream gave %d words, %v", len(got.Words), err)
	}
}
