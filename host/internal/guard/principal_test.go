package guard_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
	"github.com/rayhost/rayhost/host/internal/guard"
)

// TestPrincipal: a call the guard lets in carries who made it — a client
// or a member, by address — and a header cannot claim to be another.
func TestPrincipal(t *testing.T) {
	key := guard.PeerKey([]byte("0123456789abcdef0123456789abcdef"), token)
	g, err := guard.New(guard.Config{Token: token, PeerKey: key, Self: "10.0.0.1:6380"})
	if err != nil {
		t.Fatal(err)
	}
	var got string
	var ok bool
	h := g.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got, ok = guard.PrincipalOf(r.Context()) }))
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    string
	}{
		{"a client", map[string]string{"Authorization": "Bearer " + token}, "client@192.0.2.7"},
		{"a member", map[string]string{guard.PeerHeader: guard.PeerCredential(key, "10.0.0.1:6380")}, "member@192.0.2.7"},
		{"a client that says it is someone else", map[string]string{"Authorization": "Bearer " + token, "X-Forwarded-For": "10.9.9.9"}, "client@192.0.2.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok = "", false
			r := httptest.NewRequest(http.MethodPost, rayhostv1connect.TaskServiceHealthProcedure, nil)
			r.RemoteAddr = "192.0.2.7:40000"
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			h.ServeHTTP(httptest.NewRecorder(), r)
			if !ok || got != tc.want {
				t.Fatalf("principal %q (%v), want %q", got, ok, tc.want)
			}
		})
	}
	if _, ok := guard.PrincipalOf(t.Context()); ok {
		t.Fatal("a context the guard never saw has a principal")
	}
}
