package owner

import (
	"sync"
	"time"

	"github.com/rayhost/rayhost/internal/ids"
)

// TaskEvent is one state transition of one attempt of a task.
type TaskEvent struct {
	Task     ids.TaskID
	Parent   ids.TaskID
	Attempt  uint32
	Function string
	State    string
	Time     time.Time
	Worker   int    // the worker process's pid, once running
	Host     string // the host that runs the attempt (from scheduled on)
	Message  string // why it failed or is retried
	// Grants describes what the task was granted, on every one of its
	// events: flooding the ring cannot separate a task from its grants.
	Grants string
}

// events keeps the most recent task events in a ring (Ray keeps 100k), so a
// long-running host's memory does not grow with its history.
type events struct {
	mu      sync.Mutex
	ring    []TaskEvent
	next    int
	full    bool
	dropped uint64
	added   chan struct{} // closed by the next add (next)
}

func newEvents(n int) *events { return &events{ring: make([]TaskEvent, max(n, 1))} }

func (e *events) add(ev TaskEvent) {
	e.mu.Lock()
	if e.full {
		e.dropped++
	}
	e.ring[e.next] = ev
	e.next++
	if e.next == len(e.ring) {
		e.next, e.full = 0, true
	}
	if e.added != nil {
		close(e.added)
		e.added = nil
	}
	e.mu.Unlock()
}

// nextAdded returns a channel closed when the next event is added: a test
// waits on it for a transition instead of sleeping.
func (e *events) nextAdded() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.added == nil {
		e.added = make(chan struct{})
	}
	return e.added
}

// list returns the events oldest first, and how many were dropped.
func (e *events) list() ([]TaskEvent, uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []TaskEvent
	if e.full {
		out = append(out, e.ring[e.next:]...)
	}
	out = append(out, e.ring[:e.next]...)
	return out, e.dropped
}

// record adds an event for t entering state s; the caller holds h.mu or
// owns t.
func (h *Owner) record(t *task, s taskState, msg string) {
	h.recordAttempt(t, s, msg, t.lc.Attempt)
}

// recordAttempt is record for attempt attempt of t.
func (h *Owner) recordAttempt(t *task, s taskState, msg string, attempt uint32) {
	if !t.events {
		return
	}
	ev := TaskEvent{Task: t.id, Parent: t.parent, Attempt: attempt, Function: t.displayName(), State: s.String(), Time: h.clock.Now(), Message: msg, Host: h.cfg.ID}
	if t.lc.Node != "" {
		ev.Host = t.lc.Node
	}
	if t.worker != nil {
		ev.Worker = t.worker.pid
	}
	if !t.grants.Empty() {
		if t.grantsNote == "" {
			t.grantsNote = grantsNote(t.grants)
		}
		ev.Grants = t.grantsNote
	}
	h.events.add(ev)
}
