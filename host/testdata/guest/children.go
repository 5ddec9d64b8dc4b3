package main

import (
	"context"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

// sleeper_after runs n children one at a time, then waits on a sleeper:
// a long-lived parent, for what it keeps of the children that ended.
var _ = ray.Func2("sleeper_after", func(ctx context.Context, n, ms int) (int, error) {
	for i := range n {
		if _, err := ray.Get(ctx, add.Remote(i, i)); err != nil {
			return 0, err
		}
	}
	return ray.Get(ctx, sleeper.Remote(ms))
})
