//go:build !wasip1

package ray

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
)

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

// goroutineID is the number runtime.Stack prints in its first line,
// "goroutine 18 [running]:". Go offers no other way to tell goroutines
// apart; the format has been stable since Go 1.0.
func goroutineID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return id
}
