// Package sessions is the table of the API's client sessions: who holds
// the refs that calls to the TaskService make, and when they let go of
// them.
//
// A client names its session with a random 128-bit ID it makes itself,
// sent as the Rayhost-Session header ([Header]) on every call. A session
// belongs to the principal that called (the guard says who: see
// host/internal/guard): the same ID sent by another principal names
// another session, so nobody can release or end a session that is not
// theirs, even knowing its ID. The refs a call in a session makes (the
// results of a Submit, a Put) are held by the session's holder until the
// client releases them, ends the session, or the session is not seen for
// Config.TTL. A call in flight keeps its session alive however long it
// takes; a session is seen when a call begins and when it ends.
//
// A call without a session has its refs held by its principal's anonymous
// holder ([AnonymousHolder]), each for Config.AnonymousTTL from when it
// was made ([Table.Hold]), then released: a curl user gets that long to
// read a result, or uses a session.
//
// The Table is a deterministic core, like host/internal/refcount: no
// clock, lock, goroutine or I/O. Its caller (the owner's sessionRole) says
// what time it is, guards it with its lock, arms a timer for [Table.Next]
// and drops the holders [Table.Expire] returns.
//
//	t, _ := sessions.New(sessions.Config{TTL: 5 * time.Minute, AnonymousTTL: 10 * time.Minute, Max: 10000, MaxPerPrincipal: 1000})
//	s, err := t.Begin(sessions.Key{Principal: "client@10.0.0.7", ID: id}, now) // ErrTooMany past a cap
//	holder := s.Holder()                                                    // holds what the call makes
//	dropAgain := t.Finish(s, now)
//	exp := t.Expire(now.Add(5 * time.Minute)) // exp.Sessions: the holders to drop
package sessions

import (
	"container/list"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/rayhost/rayhost/host/internal/refcount"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/kinds"
)

// Header is the request header a session's ID travels in.
const Header = "Rayhost-Session"

// Errors of the table.
var (
	// ErrInvalidID: a session ID that is not 32 hex digits, or is all
	// zeros.
	ErrInvalidID = kinds.Classed(kinds.ErrInvalidArgument, "sessions: invalid session ID")
	// ErrTooMany: a new session would pass the host's cap on sessions, or
	// its principal's.
	ErrTooMany = kinds.Classed(kinds.ErrResourceExhausted, "sessions: too many sessions")
	// ErrConfig: New was given a Config it cannot run with.
	ErrConfig = errors.New("sessions: invalid config")
)

// ID is a session's ID: 128 random bits the client makes. The zero ID is
// no session.
type ID [16]byte

// ParseID reads an ID: 32 hex digits (either case), not all zeros.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("%w: %d characters, want 32 hex digits (a random 128-bit ID the client makes)", ErrInvalidID, len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return ID{}, fmt.Errorf("%w: not hex, want 32 hex digits (a random 128-bit ID the client makes)", ErrInvalidID)
	}
	if id.IsZero() {
		return id, fmt.Errorf("%w: all zeros, want a random 128-bit ID", ErrInvalidID)
	}
	return id, nil
}

// String is the ID in lower-case hex.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the zero ID (no session).
func (id ID) IsZero() bool { return id == ID{} }

// Key names a session: the principal it belongs to and its ID.
type Key struct {
	Principal string
	ID        ID
}

// AnonymousHolder is who holds the refs the calls of principal make
// without a session.
func AnonymousHolder(principal string) refcount.Holder {
	return refcount.Holder("anon:" + principal)
}

// Config bounds the table.
type Config struct {
	// TTL: a session with no call in flight that is not seen for this
	// long ends.
	TTL time.Duration
	// AnonymousTTL: a ref made without a session is released this long
	// after it was made.
	AnonymousTTL time.Duration
	// Max bounds the sessions of the host, MaxPerPrincipal those of one
	// principal; a call that would make one more fails with ErrTooMany.
	Max, MaxPerPrincipal int
}

// Session is one session. Its fields are the Table's; callers keep it
// between Begin and Finish.
type Session struct {
	key      Key
	holder   refcount.Holder
	calls    int // in flight
	lastSeen time.Time
	idle     *list.Element // in Table.idle while calls == 0
	ended    bool
}

// Holder is who holds the refs the session's calls make.
func (s *Session) Holder() refcount.Holder { return s.holder }

// anonRef is a ref held anonymously until at.
type anonRef struct {
	holder refcount.Holder
	id     ids.ObjectID
	at     time.Time
}

// Anonymous is a ref whose anonymous hold ran out: Holder releases ID.
type Anonymous struct {
	Holder refcount.Holder
	ID     ids.ObjectID
}

// Expired is what ran out by a time.
type Expired struct {
	// Sessions are the holders of the sessions that ended: drop them.
	Sessions []refcount.Holder
	// Anonymous are the anonymous holds that ran out: release them.
	Anonymous []Anonymous
}

// Table is the sessions of one host. The zero value is not usable: call
// New.
type Table struct {
	cfg   Config
	byKey map[Key]*Session
	// idle holds the sessions with no call in flight, least recently seen
	// first: the next to end is at its front.
	idle *list.List
	per  map[string]int
	// serial names holders: a session ended and begun again under the
	// same ID gets a new holder.
	serial uint64
	// anon are the anonymous holds, in the order they run out (one TTL
	// for all, times that do not go back): anon[head:] are pending.
	anon []anonRef
	head int
}

// New returns an empty table.
func New(cfg Config) (*Table, error) {
	if cfg.TTL <= 0 || cfg.AnonymousTTL <= 0 || cfg.Max < 1 || cfg.MaxPerPrincipal < 1 {
		return nil, fmt.Errorf("%w: TTL and AnonymousTTL must be > 0, Max and MaxPerPrincipal >= 1", ErrConfig)
	}
	return &Table{cfg: cfg, byKey: map[Key]*Session{}, idle: list.New(), per: map[string]int{}}, nil
}

// Begin starts a call in the session k at now, making the session if it
// is new (ErrTooMany past a cap). The session stays until Finish, however
// long the call takes.
func (t *Table) Begin(k Key, now time.Time) (*Session, error) {
	s := t.byKey[k]
	if s == nil {
		switch {
		case len(t.byKey) >= t.cfg.Max:
			return nil, fmt.Errorf("%w: the host has %d, its limit (rayhost start --max-sessions): end sessions you no longer use (EndSession, or Close the Go client)", ErrTooMany, len(t.byKey))
		case t.per[k.Principal] >= t.cfg.MaxPerPrincipal:
			return nil, fmt.Errorf("%w: %s has %d, the limit of one client (rayhost start --max-sessions-per-client): end sessions you no longer use (EndSession, or Close the Go client)", ErrTooMany, k.Principal, t.per[k.Principal])
		}
		t.serial++
		s = &Session{key: k, holder: refcount.Holder("session:" + k.Principal + "#" + strconv.FormatUint(t.serial, 10))}
		t.byKey[k] = s
		t.per[k.Principal]++
	}
	if s.idle != nil {
		t.idle.Remove(s.idle)
		s.idle = nil
	}
	s.calls++
	s.lastSeen = now
	return s, nil
}

// Finish ends a call Begin started, at now. It reports whether the
// session ended while the call ran: the caller then drops its holder
// again, for the refs the call made after the session's end.
func (t *Table) Finish(s *Session, now time.Time) (dropAgain bool) {
	s.calls--
	if s.ended {
		return true
	}
	s.lastSeen = now
	if s.calls == 0 {
		s.idle = t.idle.PushBack(s)
	}
	return false
}

// Lookup returns the session k, if there is one.
func (t *Table) Lookup(k Key) (*Session, bool) {
	s, ok := t.byKey[k]
	return s, ok
}

// End ends the session k and returns its holder, to drop; false if there
// is no such session. Calls still in flight in it see it ended when they
// finish.
func (t *Table) End(k Key) (refcount.Holder, bool) {
	s := t.byKey[k]
	if s == nil {
		return "", false
	}
	t.remove(s)
	return s.holder, true
}

func (t *Table) remove(s *Session) {
	delete(t.byKey, s.key)
	if t.per[s.key.Principal]--; t.per[s.key.Principal] <= 0 {
		delete(t.per, s.key.Principal)
	}
	if s.idle != nil {
		t.idle.Remove(s.idle)
		s.idle = nil
	}
	s.ended = true
}

// Hold records that principal's anonymous holder got a ref to id at now:
// Expire releases it AnonymousTTL later.
func (t *Table) Hold(principal string, id ids.ObjectID, now time.Time) {
	t.anon = append(t.anon, anonRef{holder: AnonymousHolder(principal), id: id, at: now.Add(t.cfg.AnonymousTTL)})
}

// Expire ends the sessions not seen for TTL by now and lets go of the
// anonymous holds that ran out.
func (t *Table) Expire(now time.Time) Expired {
	var out Expired
	for e := t.idle.Front(); e != nil; e = t.idle.Front() {
		s := e.Value.(*Session)
		if now.Before(s.lastSeen.Add(t.cfg.TTL)) {
			break
		}
		t.remove(s)
		out.Sessions = append(out.Sessions, s.holder)
	}
	for t.head < len(t.anon) && !now.Before(t.anon[t.head].at) {
		a := t.anon[t.head]
		out.Anonymous = append(out.Anonymous, Anonymous{Holder: a.holder, ID: a.id})
		t.anon[t.head] = anonRef{}
		t.head++
	}
	if t.head > 0 && t.head >= len(t.anon)/2 {
		rest := t.anon[t.head:]
		if cap(t.anon) > 1024 && 4*len(rest) < cap(t.anon) {
			t.anon = append(make([]anonRef, 0, 2*len(rest)), rest...) // give a burst's memory back
		} else {
			t.anon = append(t.anon[:0], rest...)
		}
		t.head = 0
	}
	return out
}

// Next is when the next session may end or anonymous hold run out; false
// if nothing is pending.
func (t *Table) Next() (time.Time, bool) {
	var next time.Time
	ok := false
	if e := t.idle.Front(); e != nil {
		next, ok = e.Value.(*Session).lastSeen.Add(t.cfg.TTL), true
	}
	if t.head < len(t.anon) {
		if at := t.anon[t.head].at; !ok || at.Before(next) {
			next, ok = at, true
		}
	}
	return next, ok
}

// Stats counts what the table holds.
type Stats struct {
	Sessions  int // live sessions
	Anonymous int // anonymous holds pending
}

// Stats returns the table's counts.
func (t *Table) Stats() Stats {
	return Stats{Sessions: len(t.byKey), Anonymous: len(t.anon) - t.head}
}
