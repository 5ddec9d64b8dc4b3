//go:build wasip1

package ray

import "sync"

// current is the running invocation. A Wasm instance runs one invocation at
// a time, so one variable serves every goroutine. The context passed to a
// remote function carries the task too, but Remote and Put take no context
// (they never block), so they read it from here.
//
// A concurrent actor's instance runs several calls at once, each on its
// goroutine (concurrent_wasip1.go): those are kept per goroutine, as local
// mode does natively. A goroutine a method starts itself acts for the
// invocation the instance was entered with.
var (
	currentMu   sync.Mutex
	current     *taskState
	currentByGo map[uint64]*taskState
)

func setCurrent(t *taskState) {
	currentMu.Lock()
	current = t
	currentMu.Unlock()
}

// setCurrentCall sets (t non-nil) or clears the call the calling goroutine
// runs on a concurrent actor's instance.
func setCurrentCall(t *taskState) {
	g := goroutineID()
	currentMu.Lock()
	defer currentMu.Unlock()
	if t == nil {
		delete(currentByGo, g)
		return
	}
	if currentByGo == nil {
		currentByGo = map[uint64]*taskState{}
	}
	currentByGo[g] = t
}

func currentTask() *taskState {
	currentMu.Lock()
	byGo := len(currentByGo) > 0
	currentMu.Unlock()
	if byGo {
		g := goroutineID()
		currentMu.Lock()
		t := currentByGo[g]
		currentMu.Unlock()
		if t != nil {
			return t
		}
	}
	currentMu.Lock()
	defer currentMu.Unlock()
	return current
}
