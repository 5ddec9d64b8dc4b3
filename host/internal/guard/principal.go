package guard

import (
	"context"
	"net/http"
)

// Principal is who a call comes from, as the guard let it in: a cluster
// member ("member@<ip>") or an API client ("client@<ip>"). Clients share
// the API token, so a client is told apart by its IP address, as
// MaxDriversPerClient and the RegisterModule rate limit tell them apart.
// The API's client sessions belong to a principal (host/internal/sessions):
// a caller can release or end only its own.
//
// The edge reads it with PrincipalOf; the guard sets it on every call it
// lets through.
func Principal(r *http.Request, member bool) string {
	if member {
		return "member@" + ClientIP(r)
	}
	return "client@" + ClientIP(r)
}

type principalKey struct{}

// WithPrincipal returns ctx carrying principal p.
func WithPrincipal(ctx context.Context, p string) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalOf returns the principal the guard set on a call's context;
// false for a call that did not come through a guard.
func PrincipalOf(ctx context.Context) (string, bool) {
	p, ok := ctx.Value(principalKey{}).(string)
	return p, ok
}
