package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rayhost/rayhost/client"
)

// explain turns a client error into one that names the fix, where the
// cause is a known one: no host at the address, a host that went away
// mid-call (connected: an earlier call had reached it), a missing or wrong
// token.
func explain(ctx context.Context, err error, c *client.Client, base string, connected bool) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return fmt.Errorf("interrupted")
	case errors.Is(err, client.ErrUnauthenticated):
		return fmt.Errorf("the host at %s refused the call for want of the right token: set --token or RAYHOST_TOKEN to the token the host was started with (%w)", base, err)
	case errors.Is(err, client.ErrUnavailable), errors.Is(err, client.ErrHost):
	default:
		return err
	}
	if answers(ctx, c) {
		return err
	}
	if connected {
		return fmt.Errorf("the host at %s went away during the call (it stopped or crashed): the tasks and objects it held are gone; check its log, restart it and run again (%w)", base, err)
	}
	return fmt.Errorf("no rayhost host answers at %s: start one with `rayhost start`, or point --address (RAYHOST_ADDRESS) at a running host (%w)", base, err)
}

// answers reports whether the host answers a health check now.
func answers(ctx context.Context, c *client.Client) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	_, err := c.Health(ctx)
	return err == nil
}
