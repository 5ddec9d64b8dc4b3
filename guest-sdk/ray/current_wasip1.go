//go:build wasip1

package ray

import "sync"

// current is the running invocation. A Wasm instance runs one invocation at
// a time, so one variable serves every goroutine. The context passed to a
// remote function carries the task too, but Remote and Put take no context
// (they never block), so they read it from here.
var (
	currentMu sync.Mutex
	current   *taskState
)

func setCurrent(t *taskState) {
	currentMu.Lock()
	current = t
	currentMu.Unlock()
}

func currentTask() *taskState {
	currentMu.Lock()
	defer currentMu.Unlock()
	return current
}
