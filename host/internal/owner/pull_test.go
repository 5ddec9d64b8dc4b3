package owner

import (
	"errors"
	"net/http"
	"testing"

	"github.com/rayhost/rayhost/host/internal/cluster"
	"github.com/rayhost/rayhost/host/internal/objdir"
	"github.com/rayhost/rayhost/host/internal/peerwire"
	"github.com/rayhost/rayhost/internal/abi"
)

// TestPullHeader: a holder's answer to a pull is taken only with a codec
// this host knows and a Content-Length (the size the puller admits into
// its store and checks the bytes against); a hostile or broken holder's
// other answers are refused before any byte is read.
func TestPullHeader(t *testing.T) {
	answer := func(codec string, length int64) *http.Response {
		h := http.Header{}
		if codec != "" {
			h.Set(peerwire.CodecHeader, codec)
		}
		return &http.Response{Header: h, ContentLength: length}
	}
	if hdr, err := pullHeader(answer("raw", 42)); err != nil || hdr.Codec != abi.CodecRaw || hdr.Size != 42 {
		t.Fatalf("a good answer: %+v, %v", hdr, err)
	}
	if hdr, err := pullHeader(answer("cbor", 0)); err != nil || hdr.Codec != abi.CodecCBOR || hdr.Size != 0 {
		t.Fatalf("an empty value: %+v, %v", hdr, err)
	}
	for name, res := range map[string]*http.Response{
		"no codec":               answer("", 42),
		"an unknown codec":       answer("pickle", 42),
		"a codec by number":      answer("1", 42),
		"chunked, no length":     answer("raw", -1),
		"no codec and no length": answer("", -1),
		"held (never pulled)":    answer("held", 42),
	} {
		if _, err := pullHeader(res); !errors.Is(err, errPullHeader) {
			t.Errorf("%s: %v, want a bad header", name, err)
		}
	}
}

// TestRawNotFound: a holder's 404 is the object not held there
// (objdir.ErrNotFound), with the kind it names (freed, or its owner died);
// other refusals stay as they are.
func TestRawNotFound(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want []error
		not  []error
	}{
		{&cluster.RawError{Status: http.StatusNotFound}, []error{objdir.ErrNotFound}, []error{objdir.ErrFreed, objdir.ErrOwnerDied}},
		{&cluster.RawError{Status: http.StatusNotFound, Kind: "object_freed"}, []error{objdir.ErrFreed}, []error{objdir.ErrOwnerDied}},
		{&cluster.RawError{Status: http.StatusNotFound, Kind: "owner_died"}, []error{objdir.ErrNotFound, objdir.ErrOwnerDied}, []error{objdir.ErrFreed}},
		{&cluster.RawError{Status: http.StatusInternalServerError}, nil, []error{objdir.ErrNotFound}},
		{&cluster.RawError{Status: http.StatusUnauthorized}, nil, []error{objdir.ErrNotFound}},
		{peerwire.ErrVersion, []error{peerwire.ErrVersion}, []error{objdir.ErrNotFound}},
	} {
		got := rawNotFound(tc.err)
		for _, w := range tc.want {
			if !errors.Is(got, w) {
				t.Errorf("%v: %v is not %v", tc.err, got, w)
			}
		}
		for _, w := range tc.not {
			if errors.Is(got, w) {
				t.Errorf("%v: %v is %v", tc.err, got, w)
			}
		}
	}
}
