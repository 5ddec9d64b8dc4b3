package edge

import (
	"context"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
)

// The bounds of a Memory listing: how many objects it lists unless told,
// and at most.
const (
	DefaultMemoryLimit = 1000
	MaxMemoryLimit     = 100_000
)

// Memory lists the objects this host counts references to, largest
// first, with why each is alive, and totals over all of them.
func (e *Edge) Memory(ctx context.Context, req *connect.Request[rayhostv1.MemoryRequest]) (*connect.Response[rayhostv1.MemoryResponse], error) {
	limit := int(req.Msg.GetLimit())
	switch {
	case limit == 0:
		limit = DefaultMemoryLimit
	case limit > MaxMemoryLimit:
		return nil, Invalid("limit %d: at most %d objects are listed (the summary counts them all)", limit, MaxMemoryLimit)
	}
	res, err := e.h.Memory(ctx, limit)
	if err != nil {
		return nil, ToConnect(err)
	}
	return connect.NewResponse(res), nil
}
