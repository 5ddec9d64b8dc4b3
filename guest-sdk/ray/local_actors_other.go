//go:build !wasip1

// This file holds local mode's actors: creating one, running its calls in
// order, restarting it, and its death.

package ray

import (
	"github.com/rayhost/rayhost/internal/abi"
)

type localActor struct {
	create    *localTask
	calls     []*localTask // queued, in submission order
	running   map[*localTask]bool
	max       int // calls that may run at once (max_concurrency)
	alive     bool
	dead      bool
	restart   bool
	restarts  int32 // left; -1 without limit
	name      [2]string
	hasName   bool
	ctorInput []abi.Value
}

// runActor creates the actor, then runs its calls in the order they were
// submitted, up to max at once (one at a time unless max_concurrency),
// until it dies or local mode ends.
func (l *localHost) runActor(a *localActor) {
	defer l.wg.Done()
	args, te := l.resolve(a.create)
	if te == nil {
		a.ctorInput = args
		te = l.construct(a, 0)
	}
	if te != nil {
		l.mu.Lock()
		l.dieLocked(a, "the actor's constructor failed")
		l.finishLocked(a.create, nil, te)
		l.mu.Unlock()
		return
	}
	for restarts := uint32(1); ; {
		var call *localTask
		restart := false
		code := l.await(func() bool {
			if a.dead {
				return true
			}
			if a.restart {
				// A restart waits for the calls that run to return (they
				// were failed and cancelled by the kill).
				if len(a.running) > 0 {
					return false
				}
				a.restart, restart = false, true
				return true
			}
			for len(a.calls) > 0 && a.calls[0].finished { // cancelled while queued
				a.calls = a.calls[1:]
			}
			if len(a.calls) > 0 && len(a.running) < a.max {
				call, a.calls = a.calls[0], a.calls[1:]
				a.running[call] = true
				return true
			}
			return false
		}, -1, nil)
		l.mu.Lock()
		dead := a.dead
		l.mu.Unlock()
		if code != 0 || dead {
			return
		}
		if restart {
			if te := l.construct(a, restarts); te != nil {
				l.mu.Lock()
				l.dieLocked(a, "the actor's constructor failed on restart: "+te.Message)
				l.mu.Unlock()
				return
			}
			restarts++
			continue
		}
		if a.max == 1 {
			l.runCall(a, call)
			continue
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.runCall(a, call)
		}()
	}
}

// runCall runs one call of actor a.
func (l *localHost) runCall(a *localActor, call *localTask) {
	args, te := l.resolve(call)
	var vals []abi.Value
	if te == nil {
		vals, te = l.attempt(call, 0, args)
	}
	l.finish(call, vals, te)
	l.mu.Lock()
	delete(a.running, call)
	l.broadcast()
	l.mu.Unlock()
}

// construct runs the actor's constructor; the first run also ends the
// creation task, which Ready waits for.
func (l *localHost) construct(a *localActor, attempt uint32) *abi.TaskError {
	vals, te := l.attempt(a.create, attempt, a.ctorInput)
	if te != nil {
		return te
	}
	l.mu.Lock()
	a.alive = true
	l.finishLocked(a.create, vals, nil)
	l.mu.Unlock()
	return nil
}

// dieLocked ends actor a: its queued and running calls fail, its name is free.
func (l *localHost) dieLocked(a *localActor, msg string) {
	if a.dead {
		return
	}
	a.dead = true
	if a.hasName && l.names[a.name] == a {
		delete(l.names, a.name)
	}
	died := &abi.TaskError{Kind: abi.ErrorActorDied, Message: msg}
	for _, c := range a.calls {
		l.finishLocked(c, nil, died)
	}
	a.calls = nil
	for r := range a.running {
		l.finishLocked(r, nil, died)
		signalCancel(r)
	}
	l.broadcast()
}

func (l *localHost) killLocked(a *localActor, noRestart bool) {
	if a.dead {
		return
	}
	if !a.alive {
		l.cancelLocked(a.create, true, false)
		l.dieLocked(a, "the actor was killed")
		return
	}
	if noRestart || a.restarts == 0 {
		l.dieLocked(a, "the actor was killed")
		return
	}
	if a.restarts > 0 {
		a.restarts--
	}
	for r := range a.running {
		if !r.finished {
			l.finishLocked(r, nil, &abi.TaskError{Kind: abi.ErrorActorDied, Message: "the actor was killed while running the call"})
			signalCancel(r)
		}
	}
	a.restart = true
	l.broadcast()
}
