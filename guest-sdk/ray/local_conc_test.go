//go:build !wasip1

package ray

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
)

// ltGate is a barrier actor with MaxConcurrency(4): its wait calls block
// until open runs, which needs calls that run at once.
type ltGateState struct {
	ch      chan struct{}
	waiting atomic.Int32
}

var (
	ltGate = Actor0("lt.Gate", func(ctx context.Context) (*ltGateState, error) {
		return &ltGateState{ch: make(chan struct{})}, nil
	}, MaxConcurrency(4))
	ltGateWait = Method0(ltGate, "wait", func(g *ltGateState, ctx context.Context) (bool, error) {
		g.waiting.Add(1)
		defer g.waiting.Add(-1)
		select {
		case <-g.ch:
			return true, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	})
	ltGateOpen = Method0(ltGate, "open", func(g *ltGateState, ctx context.Context) (bool, error) {
		close(g.ch)
		return true, nil
	})
	ltGateWaiting = Method0(ltGate, "waiting", func(g *ltGateState, ctx context.Context) (int, error) {
		return int(g.waiting.Load()), nil
	})
)

// Local mode runs up to max_concurrency calls of an actor at once: a
// barrier opens, and a kill fails every call that runs.
func TestLocalModeMaxConcurrency(t *testing.T) {
	runLocal(t, func(ctx context.Context) error {
		g := ltGate.Remote()
		ws := []ObjectRef[bool]{ltGateWait.Remote(g), ltGateWait.Remote(g), ltGateWait.Remote(g)}
		if _, err := Get(ctx, ltGateOpen.Remote(g)); err != nil {
			return fmt.Errorf("open: %w", err)
		}
		vs, err := GetAll(ctx, ws)
		if err != nil || !slices.Equal(vs, []bool{true, true, true}) {
			return fmt.Errorf("the waits after open: %v, %v", vs, err)
		}

		k := ltGate.Remote()
		ws = []ObjectRef[bool]{ltGateWait.Remote(k), ltGateWait.Remote(k), ltGateWait.Remote(k)}
		for {
			n, err := Get(ctx, ltGateWaiting.Remote(k))
			if err != nil {
				return err
			}
			if n == 3 {
				break
			}
		}
		if err := Kill(k, true); err != nil {
			return err
		}
		for i, w := range ws {
			if _, err := Get(ctx, w); !errors.Is(err, ErrActorDied) {
				return fmt.Errorf("wait %d after the kill: %v, want ErrActorDied", i, err)
			}
		}
		return nil
	})
}
