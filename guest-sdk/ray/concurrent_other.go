//go:build !wasip1

package ray

import (
	"context"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// serveCalls: natively (local mode) each call already runs on its own
// goroutine; local_tasks_other.go starts several calls of a concurrent
// actor at once.
func serveCalls(*abi.Invocation, func(context.Context) ([]abi.Value, error)) (abi.Status, bool) {
	return 0, false
}

// baseContext is the context a local-mode task runs in: it ends when the
// task is cancelled or its actor killed, as a concurrent actor's call's
// does on a host.
func baseContext(id ids.TaskID) (context.Context, func()) {
	l := activeLocal()
	if l == nil {
		return context.Background(), func() {}
	}
	l.mu.Lock()
	t := l.tasks[id]
	l.mu.Unlock()
	if t == nil {
		return context.Background(), func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-t.cancelCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
