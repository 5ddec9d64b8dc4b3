package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	"github.com/rayhost/rayhost/host/internal/peerwire"
	"github.com/rayhost/rayhost/internal/kinds"
)

// headers is an interceptor that adds the same headers (a member's
// credential) to every call.
type headers http.Header

func (h headers) set(to http.Header) {
	for k, v := range h {
		to[k] = slices.Clone(v) // each call its own: nothing it does reaches the next
	}
}

func (h headers) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		h.set(req.Header())
		return next(ctx, req)
	}
}

func (h headers) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		h.set(conn.RequestHeader())
		return conn
	}
}

func (h headers) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// raw is how to make a raw HTTP call (not Connect) to a member: the
// peer protocol's byte streams (peerwire.PullBytesPath).
type raw struct {
	httpc *http.Client
	base  string
	cred  http.Header
}

// maxErrorBody bounds what is read of a refusal's body for its message.
const maxErrorBody = 4 << 10

// Get makes a GET request to path (a raw route of the member's peer
// service) with query, this host's credential and the peer protocol
// version. An answer in another version is a peerwire.ErrVersion; one
// whose status is not 200 OK is a *RawError with the status and the
// start of the body. On success the caller closes the body.
func (c Conn) Get(ctx context.Context, path string, query url.Values) (*http.Response, error) {
	r := c.raw
	if r.httpc == nil {
		return nil, fmt.Errorf("%s: %w (no connection)", c.Addr, ErrNotMember)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+path+"?"+query.Encode(), nil)
	if err != nil {
		return nil, err
	}
	headers(r.cred).set(req.Header)
	req.Header.Set(peerwire.VersionHeader, strconv.Itoa(peerwire.Version))
	res, err := r.httpc.Do(req)
	if err != nil {
		return nil, err
	}
	// A refused credential is answered before any handler, without a
	// version; every other answer carries the member's version (a route
	// unknown there is another version's).
	if res.StatusCode != http.StatusUnauthorized {
		if err := peerwire.CheckVersion(res.Header, c.Addr); err != nil {
			res.Body.Close()
			return nil, err
		}
	}
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, maxErrorBody))
		res.Body.Close()
		return nil, &RawError{Status: res.StatusCode, Kind: res.Header.Get(kinds.Header), Message: strings.TrimSpace(string(b))}
	}
	return res, nil
}

// RawError is a raw call's answer other than 200 OK.
type RawError struct {
	Status  int
	Kind    string // the error's kind (kinds.Header), if it has one
	Message string
}

func (e *RawError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}
