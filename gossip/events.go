package gossip

import "sync"

// eventQueue hands events to one consumer through a channel, buffering
// without bound in between. Serf stalls its gossip when its event channel
// fills up, and the twin pushes while holding its network's lock, so
// pushing must never wait for the consumer.
type eventQueue struct {
	out  chan Event
	wake chan struct{} // capacity 1: "pending is not empty"
	done chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	pending []Event
	stopped bool
}

func newEventQueue() *eventQueue {
	q := &eventQueue{
		out:  make(chan Event, 64),
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	q.wg.Go(q.run)
	return q
}

// push queues evs; after stop it drops them.
func (q *eventQueue) push(evs ...Event) {
	q.mu.Lock()
	if q.stopped {
		q.mu.Unlock()
		return
	}
	q.pending = append(q.pending, evs...)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// run moves events from pending to out until stop.
func (q *eventQueue) run() {
	for {
		q.mu.Lock()
		if len(q.pending) == 0 {
			q.mu.Unlock()
			select {
			case <-q.wake:
				continue
			case <-q.done:
				return
			}
		}
		ev := q.pending[0]
		q.pending[0] = Event{}
		q.pending = q.pending[1:]
		if len(q.pending) == 0 {
			q.pending = nil // let the backing array go after a burst
		}
		q.mu.Unlock()
		select {
		case q.out <- ev:
		case <-q.done:
			return
		}
	}
}

// stop ends delivery and waits for the mover. Events not yet delivered are
// dropped. out is deliberately left open: a consumer selecting on it
// alongside its own stop signal must not see a stream of zero Events.
func (q *eventQueue) stop() {
	q.mu.Lock()
	if q.stopped {
		q.mu.Unlock()
		return
	}
	q.stopped = true
	q.pending = nil
	q.mu.Unlock()
	close(q.done)
	q.wg.Wait()
}
