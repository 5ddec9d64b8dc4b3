package owner

import (
	"fmt"
	"sync"
	"time"

	"github.com/rayhost/rayhost/host/internal/edge"
	"github.com/rayhost/rayhost/host/internal/refcount"
	"github.com/rayhost/rayhost/host/internal/sessions"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/clock"
	"github.com/rayhost/rayhost/internal/ids"
)

// sessionRole is the shell of the API's client sessions
// (host/internal/sessions): it guards the table with its own lock, tells
// it the time by the owner's clock (Config.SessionClock), keeps one timer
// armed for the next session to end or anonymous hold to run out, and
// drops or releases what ran out through the reference counter
// (refsRole).
//
// The edge begins every call with BeginCall (api.go), which gives the
// call its holder: the session's, or its principal's anonymous one. The
// refs Submit and Put make, and those inside the values Get reads, are
// held by it; the anonymous ones are also noted here (heldAnonymously) to
// be released AnonymousRefTTL later.
// Drivers (api.RunDriver) are no API client's: their refs are their
// attempts' (refs.go).
//
// Its lock is taken with no other held, and none is taken under it but
// the clock's: the counter and the object directory are called after it
// is released.
type sessionRole struct {
	o     *Owner
	clock clock.Clock
	mu    sync.Mutex
	t     *sessions.Table
	// timer fires at at for the table's Next; gen tells a stale timer
	// (stopped too late) from the current one.
	timer  clock.Timer
	at     time.Time
	gen    uint64
	closed bool
}

func newSessionRole(h *Owner) (*sessionRole, error) {
	c := &h.cfg
	t, err := sessions.New(sessions.Config{TTL: c.SessionTTL, AnonymousTTL: c.AnonymousRefTTL, Max: c.MaxSessions, MaxPerPrincipal: c.MaxSessionsPerClient})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	clk := c.SessionClock
	if clk == nil {
		clk = h.clock
	}
	return &sessionRole{o: h, clock: clk, t: t}, nil
}

func keyOf(c edge.Caller) sessions.Key { return sessions.Key{Principal: c.Principal, ID: c.Session} }

// begin starts a call of c: in a session, it refreshes it (making it,
// within the caps) and keeps it alive until end.
func (r *sessionRole) begin(c edge.Caller) (_ edge.Caller, end func(), err error) {
	if !c.InSession() {
		c.Holder = string(sessions.AnonymousHolder(c.Principal))
		return c, func() {}, nil
	}
	r.mu.Lock()
	s, err := r.t.Begin(keyOf(c), r.clock.Now())
	r.mu.Unlock()
	if err != nil {
		return c, nil, err
	}
	c.Holder = string(s.Holder())
	var once sync.Once
	return c, func() { once.Do(func() { r.finish(s) }) }, nil
}

func (r *sessionRole) finish(s *sessions.Session) {
	r.mu.Lock()
	again := r.t.Finish(s, r.clock.Now())
	r.armLocked()
	r.mu.Unlock()
	if again {
		// The session ended while the call ran: what the call made after
		// that goes too.
		r.o.refs.dropHolder(s.Holder())
	}
}

// holder is who holds the refs c's call makes: the holder BeginCall gave
// it; for a call that did not begin (the owner's tests call the api
// directly), its live session's, else its principal's anonymous holder.
func (r *sessionRole) holder(c edge.Caller) refcount.Holder {
	if c.Holder != "" {
		return refcount.Holder(c.Holder)
	}
	if c.InSession() {
		r.mu.Lock()
		s, ok := r.t.Lookup(keyOf(c))
		r.mu.Unlock()
		if ok {
			return s.Holder()
		}
	}
	return sessions.AnonymousHolder(c.Principal)
}

// heldAnonymously notes refs c made without a session, to be released
// AnonymousRefTTL from now.
func (r *sessionRole) heldAnonymously(c edge.Caller, objs []ids.ObjectID) {
	if c.InSession() || len(objs) == 0 {
		return
	}
	r.mu.Lock()
	now := r.clock.Now()
	for _, id := range objs {
		r.t.Hold(c.Principal, id, now)
	}
	r.armLocked()
	r.mu.Unlock()
}

// read notes that c read vals: it holds the refs inside them (as a
// guest's attempt does the refs in its arguments and Get results), until
// it releases them or its session ends; anonymously, for AnonymousRefTTL.
func (r *sessionRole) read(c edge.Caller, vals []abi.Value) {
	r.heldAnonymously(c, r.o.refs.held(r.holder(c), vals))
}

// release lets go of one of c's holds on each of objs.
func (r *sessionRole) release(c edge.Caller, objs []ids.ObjectID) {
	if len(objs) > 0 {
		r.o.refs.release(r.holder(c), objs, nil)
	}
}

// end ends c's session; false if it has none.
func (r *sessionRole) end(c edge.Caller) bool {
	if !c.InSession() {
		return false
	}
	r.mu.Lock()
	h, ok := r.t.End(keyOf(c))
	r.mu.Unlock()
	if ok {
		r.o.refs.dropHolder(h)
	}
	return ok
}

// armLocked arms the timer for the table's next expiry, unless one is
// armed for then or earlier.
func (r *sessionRole) armLocked() {
	next, ok := r.t.Next()
	if !ok || r.closed || (r.timer != nil && !next.Before(r.at)) {
		return
	}
	if r.timer != nil {
		r.timer.Stop()
	}
	r.gen++
	gen := r.gen
	r.at = next
	r.timer = r.clock.AfterFunc(max(next.Sub(r.clock.Now()), 0), func() { r.fire(gen) })
}

// fire ends what ran out and arms the timer for what comes next.
func (r *sessionRole) fire(gen uint64) {
	r.mu.Lock()
	if r.closed || gen != r.gen {
		r.mu.Unlock()
		return
	}
	r.timer = nil
	exp := r.t.Expire(r.clock.Now())
	r.armLocked()
	r.mu.Unlock()
	if len(exp.Sessions) == 0 && len(exp.Anonymous) == 0 {
		return
	}
	r.tracked(func() {
		for _, h := range exp.Sessions {
			r.o.refs.dropHolder(h)
		}
		by := map[refcount.Holder][]ids.ObjectID{}
		var order []refcount.Holder
		for _, a := range exp.Anonymous {
			if by[a.Holder] == nil {
				order = append(order, a.Holder)
			}
			by[a.Holder] = append(by[a.Holder], a.ID)
		}
		for _, h := range order {
			r.o.refs.release(h, by[h], nil)
		}
	})
}

// close stops the timer: nothing ends once the owner shuts down.
func (r *sessionRole) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
}

func (r *sessionRole) stats() sessions.Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.t.Stats()
}

// tracked runs fn now, as one of the goroutines the owner's Close waits
// for, unless the owner is closed.
func (r *sessionRole) tracked(fn func()) {
	h := r.o
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.wg.Add(1)
	h.mu.Unlock()
	defer h.wg.Done()
	fn()
}

// RefStats is what h's reference counter and session table count:
// objects counted, holders, sessions live, anonymous holds pending (for
// tests, and `rayhost memory` to come). A function, not a method: the
// Owner has its share of those.
func RefStats(h *Owner) (refcount.Stats, sessions.Stats) {
	return h.refs.stats(), h.sess.stats()
}
