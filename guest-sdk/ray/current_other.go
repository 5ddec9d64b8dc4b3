//go:build !wasip1

package ray

import "sync"

// Natively, local mode (RunLocal) runs many tasks at once, each invocation
// on its own goroutine, so the running invocation is kept per goroutine.
// Remote and Put take no context (they never block) and find their task
// here. A goroutine the function starts itself is not known here: its
// Remote and Put calls act for local mode's own task (see RunLocal).
var (
	currentMu   sync.Mutex
	currentByGo = map[uint64]*taskState{}
)

func setCurrent(t *taskState) {
	g := goroutineID()
	currentMu.Lock()
	defer currentMu.Unlock()
	if t == nil {
		delete(currentByGo, g)
		return
	}
	currentByGo[g] = t
}

func currentTask() *taskState {
	g := goroutineID()
	currentMu.Lock()
	t := currentByGo[g]
	currentMu.Unlock()
	if t != nil {
		return t
	}
	if l := activeLocal(); l != nil {
		return l.stray
	}
	return nil
}
