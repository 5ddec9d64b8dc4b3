package cluster

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"

	"github.com/rayhost/rayhost/host/internal/peerwire"
	"github.com/rayhost/rayhost/internal/kinds"
)

// TestConnGet: a raw call carries the credential for the member's address
// and this host's version; what the member answers is told apart: its
// body on 200 in this version, ErrVersion for an answer in another version
// or none (a route the member does not have), a *RawError with the status,
// the error's kind and the start of the body for a refusal, and the
// guard's 401 (which carries no version) as a refusal too.
func TestConnGet(t *testing.T) {
	this := strconv.Itoa(peerwire.Version)
	var got http.Header
	var answer func(w http.ResponseWriter)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		if r.URL.Path != peerwire.PullBytesPath || r.URL.Query().Get("id") != "x y" {
			t.Errorf("called %s", r.URL)
		}
		answer(w)
	}))
	defer srv.Close()
	c := Conn{Addr: "10.0.0.9:7", raw: raw{httpc: srv.Client(), base: srv.URL,
		cred: http.Header{"Test-Credential": {"for 10.0.0.9:7"}}}}
	get := func() (string, error) {
		res, err := c.Get(t.Context(), peerwire.PullBytesPath, url.Values{"id": {"x y"}})
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return string(b), err
	}

	answer = func(w http.ResponseWriter) {
		w.Header().Set(peerwire.VersionHeader, this)
		_, _ = io.WriteString(w, "the bytes")
	}
	if body, err := get(); err != nil || body != "the bytes" {
		t.Fatalf("a served call: %q, %v", body, err)
	}
	if got.Get("Test-Credential") != "for 10.0.0.9:7" || got.Get(peerwire.VersionHeader) != this {
		t.Fatalf("the call's headers: %v", got)
	}

	for _, v := range []string{strconv.Itoa(peerwire.Version + 1), ""} {
		answer = func(w http.ResponseWriter) {
			if v != "" {
				w.Header().Set(peerwire.VersionHeader, v)
			}
			http.Error(w, "404 page not found", http.StatusNotFound)
		}
		if _, err := get(); !errors.Is(err, peerwire.ErrVersion) {
			t.Fatalf("an answer in version %q: %v, want ErrVersion", v, err)
		}
	}

	answer = func(w http.ResponseWriter) {
		w.Header().Set(peerwire.VersionHeader, this)
		w.Header().Set(kinds.Header, "object_freed")
		http.Error(w, "object freed", http.StatusNotFound)
	}
	var re *RawError
	if _, err := get(); !errors.As(err, &re) || re.Status != http.StatusNotFound || re.Kind != "object_freed" || re.Message != "object freed" {
		t.Fatalf("a refusal: %v", err)
	}

	answer = func(w http.ResponseWriter) { http.Error(w, "unauthenticated", http.StatusUnauthorized) }
	if _, err := get(); !errors.As(err, &re) || re.Status != http.StatusUnauthorized {
		t.Fatalf("the guard's refusal: %v", err)
	}

	// A refusal's body is read up to a bound, not whole.
	answer = func(w http.ResponseWriter) {
		w.Header().Set(peerwire.VersionHeader, this)
		w.WriteHeader(http.StatusInternalServerError)
		big := make([]byte, 1<<20)
		for i := range big {
			big[i] = 'x'
		}
		_, _ = w.Write(big)
	}
	if _, err := get(); !errors.As(err, &re) || len(re.Message) != maxErrorBody {
		t.Fatalf("a refusal with a large body: %d bytes of message, %v", len(re.Message), err)
	}

	// A Conn with no connection (a zero Conn) fails without calling.
	if _, err := (Conn{Addr: "10.0.0.9:7"}).Get(t.Context(), peerwire.PullBytesPath, nil); !errors.Is(err, ErrNotMember) {
		t.Fatalf("a zero Conn: %v", err)
	}
}
