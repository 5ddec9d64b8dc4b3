package ray

import (
	"context"
	"sync"

	"github.com/rayhost/rayhost/internal/ids"
)

// taskState is what the SDK knows about the invocation running now. An
// instance runs one invocation at a time, but the function may start
// goroutines that submit or put, hence the mutex.
type taskState struct {
	id      ids.TaskID
	owner   string
	attempt uint32
	fn      string
	actor   ids.TaskID // the actor this invocation creates or calls
	// call is set for a call of a concurrent actor's instance.
	call resultEnder

	mu       sync.Mutex
	children uint64
	puts     uint32
}

func (t *taskState) nextChild() ids.TaskID {
	t.mu.Lock()
	n := t.children
	t.children++
	t.mu.Unlock()
	return t.id.ChildOf(t.attempt, n)
}

func (t *taskState) nextPut() ids.ObjectID {
	t.mu.Lock()
	n := t.puts
	t.puts++
	t.mu.Unlock()
	return t.id.Put(n)
}

type taskKey struct{}

// TaskID returns the hex ID of the task running ctx's function, or "" when
// ctx does not belong to a task.
func TaskID(ctx context.Context) string {
	if t, ok := ctx.Value(taskKey{}).(*taskState); ok {
		return t.id.String()
	}
	return ""
}

// Attempt returns the attempt number (0 for the first run) of the task
// running ctx's function.
func Attempt(ctx context.Context) int {
	if t, ok := ctx.Value(taskKey{}).(*taskState); ok {
		return int(t.attempt)
	}
	return 0
}
