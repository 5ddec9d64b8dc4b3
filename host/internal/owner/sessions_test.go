package owner

import (
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/host/internal/edge"
	"github.com/rayhost/rayhost/host/internal/sessions"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/kinds"
)

// The sessions' tests drive expiry with the fixture's Fake session clock:
// a session lives a minute unseen, an anonymous hold ten.
const (
	testSessionTTL   = time.Minute
	testAnonymousTTL = 10 * time.Minute
)

func sessionFixture(t *testing.T) *fixture {
	return newFixture(t, func(c *Config) {
		c.SessionTTL, c.AnonymousRefTTL = testSessionTTL, testAnonymousTTL
		c.MaxSessions, c.MaxSessionsPerClient = 3, 2
	})
}

var (
	alice   = edge.Caller{Principal: "client@10.0.0.1", Session: sessions.ID{15: 1}}
	mallory = edge.Caller{Principal: "client@10.0.0.66", Session: alice.Session} // knows Alice's ID
	anon    = edge.Caller{Principal: "client@10.0.0.1"}
)

// in runs fn as one call of c, begun and ended as the edge does.
func (f *fixture) in(t *testing.T, c edge.Caller, fn func(c edge.Caller)) {
	t.Helper()
	c, end, err := f.api.BeginCall(c)
	if err != nil {
		t.Fatalf("BeginCall: %v", err)
	}
	defer end()
	fn(c)
}

// putAs puts the JSON value v in a call of c.
func (f *fixture) putAs(t *testing.T, c edge.Caller, v int) ids.ObjectID {
	t.Helper()
	id := ids.NewTaskID().Put(0)
	f.in(t, c, func(c edge.Caller) {
		if err := f.api.Put(hangCtx(t), c, id, abi.Value{Codec: abi.CodecJSON, Data: []byte(strconv.Itoa(v))}); err != nil {
			t.Fatal(err)
		}
	})
	return id
}

// addAs submits add(a, b) in a call of c and waits for its result.
func (f *fixture) addAs(t *testing.T, c edge.Caller, a, b int) ids.ObjectID {
	t.Helper()
	var out ids.ObjectID
	f.in(t, c, func(c edge.Caller) {
		req := &rayhostv1.SubmitRequest{Module: f.mod, Function: "add", Args: []*rayhostv1.Arg{
			{Kind: &rayhostv1.Arg_Json{Json: strconv.Itoa(a)}}, {Kind: &rayhostv1.Arg_Json{Json: strconv.Itoa(b)}}}}
		_, refs, err := f.api.Submit(hangCtx(t), c, req)
		if err != nil {
			t.Fatal(err)
		}
		out = refs[0]
	})
	var sum int
	f.result(t, out, &sum)
	if sum != a+b {
		t.Fatalf("add(%d, %d) = %d", a, b, sum)
	}
	return out
}

// freed waits until id is freed and checks that reading it says so.
func (f *fixture) freed(t *testing.T, id ids.ObjectID, why string) {
	t.Helper()
	waitUntil(t, why, func() bool { return !f.o.objs.Known(hangCtx(t), id) })
	if te := f.failure(t, id); te.Kind != abi.ErrorObjectFreed {
		t.Fatalf("%s: a freed object reads as %s: %s", why, te.Kind, te.Message)
	}
}

// alive checks that id is still counted and reads.
func (f *fixture) alive(t *testing.T, id ids.ObjectID, why string) {
	t.Helper()
	f.o.refs.mu.Lock()
	counted := f.o.refs.c.Counted(id)
	f.o.refs.mu.Unlock()
	if !counted {
		t.Fatalf("%s: %s is no longer counted", why, id)
	}
	if v := f.value(t, id); v.Codec == abi.CodecError {
		t.Fatalf("%s: %s reads as a failure: %+v", why, id, abi.DecodeTaskError(v.Data))
	}
}

// TestSessionExpires: what a session's calls made lives while the session
// is seen (each call refreshes it; a call in flight keeps it alive), and
// is freed once it is not seen for its TTL.
func TestSessionExpires(t *testing.T) {
	f := sessionFixture(t)
	put := f.putAs(t, alice, 7)
	sum := f.addAs(t, alice, 20, 22)

	f.sclk.Advance(testSessionTTL - time.Second)
	f.in(t, alice, func(edge.Caller) {}) // seen: a KeepAlive, say
	f.sclk.Advance(testSessionTTL - time.Second)
	f.alive(t, put, "a session seen in time")
	f.alive(t, sum, "a session seen in time")

	// A call in flight for many TTLs keeps it alive.
	_, end, err := f.api.BeginCall(alice)
	if err != nil {
		t.Fatal(err)
	}
	f.sclk.Advance(5 * testSessionTTL)
	f.alive(t, put, "a session with a call in flight")
	end()

	f.sclk.Advance(testSessionTTL)
	f.freed(t, put, "the expired session's put")
	f.freed(t, sum, "the expired session's result")
	if _, ss := RefStats(f.o); ss.Sessions != 0 {
		t.Fatalf("sessions after expiry: %+v", ss)
	}
}

// TestSessionRelease: Release lets go of the caller's own refs only;
// another principal sending the same session ID, or a ref the caller does
// not hold, changes nothing and is no error.
func TestSessionRelease(t *testing.T) {
	f := sessionFixture(t)
	a, b := f.putAs(t, alice, 1), f.addAs(t, alice, 1, 2)
	stranger := f.putAs(t, mallory, 3)

	f.in(t, mallory, func(c edge.Caller) { f.api.Release(c, []ids.ObjectID{a, b}) })
	f.in(t, anon, func(c edge.Caller) { f.api.Release(c, []ids.ObjectID{a, b}) }) // Alice's address, no session
	f.alive(t, a, "after a stranger's release")
	f.alive(t, b, "after a stranger's release")

	f.in(t, alice, func(c edge.Caller) {
		f.api.Release(c, []ids.ObjectID{a, ids.NewTaskID().Return(0), stranger})
	})
	f.freed(t, a, "a released put")
	f.alive(t, b, "a ref not released")
	f.alive(t, stranger, "another principal's ref, released by Alice")
	// Releasing again does nothing.
	f.in(t, alice, func(c edge.Caller) { f.api.Release(c, []ids.ObjectID{a}) })
}

// TestEndSession: EndSession frees what the session held; the same ID
// from another principal ends nothing of it.
func TestEndSession(t *testing.T) {
	f := sessionFixture(t)
	a, b := f.putAs(t, alice, 1), f.addAs(t, alice, 1, 2)
	f.putAs(t, mallory, 3) // mallory has a session under the same ID
	if !f.api.EndSession(mallory) {
		t.Fatal("mallory's own session did not end")
	}
	if f.api.EndSession(mallory) {
		t.Fatal("a session ended twice")
	}
	f.alive(t, a, "after another principal ended its session of the same ID")
	if !f.api.EndSession(alice) {
		t.Fatal("EndSession found no session")
	}
	f.freed(t, a, "an ended session's put")
	f.freed(t, b, "an ended session's result")
	if f.api.EndSession(anon) {
		t.Fatal("a caller without a session ended one")
	}
	// The ID names a new, empty session now.
	c := f.putAs(t, alice, 4)
	f.alive(t, c, "a put in a session begun again")
}

// TestEndSessionDuringACall: a call that runs past its session's end (a
// Put that finishes after EndSession) leaves nothing behind.
func TestEndSessionDuringACall(t *testing.T) {
	f := sessionFixture(t)
	c, end, err := f.api.BeginCall(alice)
	if err != nil {
		t.Fatal(err)
	}
	if !f.api.EndSession(alice) {
		t.Fatal("EndSession")
	}
	id := ids.NewTaskID().Put(0)
	if err := f.api.Put(hangCtx(t), c, id, abi.Value{Codec: abi.CodecJSON, Data: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	end()
	f.freed(t, id, "a put made after its session ended")
}

// TestSessionCaps: past a client's cap, or the host's, a new session is
// refused with a resource_exhausted error naming the flag; sessions
// already there and calls without one go on.
func TestSessionCaps(t *testing.T) {
	f := sessionFixture(t)
	p := func(n int) edge.Caller {
		return edge.Caller{Principal: "client@10.0.0." + strconv.Itoa(n/10), Session: sessions.ID{15: byte(n)}}
	}
	f.putAs(t, p(1), 1)
	f.putAs(t, p(2), 1)
	if _, _, err := f.api.BeginCall(p(3)); !errors.Is(err, sessions.ErrTooMany) || !errors.Is(err, kinds.ErrResourceExhausted) {
		t.Fatalf("a client's third session: %v", err)
	}
	f.putAs(t, p(11), 1)
	_, _, err := f.api.BeginCall(p(21))
	if !errors.Is(err, sessions.ErrTooMany) {
		t.Fatalf("the host's fourth session: %v", err)
	}
	t.Logf("refused: %v", err)
	f.putAs(t, p(1), 2)
	f.putAs(t, anon, 2)
	// Sessions that end make room.
	f.sclk.Advance(testSessionTTL)
	f.putAs(t, p(21), 1)
}

// TestAnonymousRefsRunOut: without a session, a ref is held for
// AnonymousRefTTL from when it was made, then freed; Release lets go of
// it earlier, and only its principal's.
func TestAnonymousRefsRunOut(t *testing.T) {
	f := sessionFixture(t)
	early := f.putAs(t, anon, 1)
	f.sclk.Advance(testAnonymousTTL / 2)
	late := f.addAs(t, anon, 2, 3)
	other := f.putAs(t, anon, 4)
	f.in(t, edge.Caller{Principal: "client@10.0.0.66"}, func(c edge.Caller) { f.api.Release(c, []ids.ObjectID{other}) })
	f.alive(t, other, "another principal's anonymous release")
	f.in(t, anon, func(c edge.Caller) { f.api.Release(c, []ids.ObjectID{other}) })
	f.freed(t, other, "an anonymous ref released")

	f.sclk.Advance(testAnonymousTTL / 2)
	f.freed(t, early, "an anonymous ref past its TTL")
	f.alive(t, late, "an anonymous ref within its TTL")
	f.sclk.Advance(testAnonymousTTL / 2)
	f.freed(t, late, "an anonymous result past its TTL")
	if _, ss := RefStats(f.o); ss.Anonymous != 0 {
		t.Fatalf("anonymous holds left: %+v", ss)
	}
}

// TestSessionArgumentOutlivesTheSession: a task a session submitted keeps
// its argument while it runs, though the session that made both ended.
func TestSessionArgumentOutlivesTheSession(t *testing.T) {
	f := sessionFixture(t)
	in := f.putAs(t, alice, 40)
	var out ids.ObjectID
	f.in(t, alice, func(c edge.Caller) {
		req := &rayhostv1.SubmitRequest{Module: f.mod, Function: "add", Args: []*rayhostv1.Arg{
			{Kind: &rayhostv1.Arg_Ref{Ref: &rayhostv1.ObjectRef{Id: in.String(), Owner: f.o.addr}}}, {Kind: &rayhostv1.Arg_Json{Json: "2"}}}}
		_, refs, err := f.api.Submit(hangCtx(t), c, req)
		if err != nil {
			t.Fatal(err)
		}
		out = refs[0]
	})
	// Alice lets go of the put at once (her client dropped it): the task
	// still has it.
	f.in(t, alice, func(c edge.Caller) { f.api.Release(c, []ids.ObjectID{in}) })
	var sum int
	f.result(t, out, &sum)
	if sum != 42 {
		t.Fatalf("add(put, 2) = %d", sum)
	}
	f.freed(t, in, "the argument once its task ended")
	f.alive(t, out, "the result Alice holds")
}

// readAs reads id's value in a call of c, as the edge's Get does.
func (f *fixture) readAs(t *testing.T, c edge.Caller, id ids.ObjectID) abi.Value {
	t.Helper()
	var v abi.Value
	f.in(t, c, func(c edge.Caller) {
		vals, err := f.api.Get(hangCtx(t), []ids.ObjectID{id}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		f.api.Read(c, vals)
		v = vals[0]
	})
	return v
}

// TestReadRefsAreHeld: a ref a caller reads inside a value is its to hold,
// as a ref it made: the container can go, the nested object stays until
// the caller releases it or its session ends (anonymously: for the TTL).
func TestReadRefsAreHeld(t *testing.T) {
	f := sessionFixture(t)
	for _, c := range []edge.Caller{alice, anon} {
		var outer ids.ObjectID
		f.in(t, c, func(c edge.Caller) {
			req := &rayhostv1.SubmitRequest{Module: f.mod, Function: "put_bytes", Args: []*rayhostv1.Arg{{Kind: &rayhostv1.Arg_Json{Json: "8"}}}}
			_, refs, err := f.api.Submit(hangCtx(t), c, req)
			if err != nil {
				t.Fatal(err)
			}
			outer = refs[0]
		})
		inner := outer.Task().Put(0)
		f.readAs(t, c, outer)
		f.readAs(t, c, outer) // held twice now
		f.in(t, c, func(c edge.Caller) { f.api.Release(c, []ids.ObjectID{outer, inner}) })
		f.freed(t, outer, "the released container")
		f.alive(t, inner, "a nested ref read twice, released once")
		if c.InSession() {
			f.api.EndSession(c)
		} else {
			f.sclk.Advance(testAnonymousTTL)
		}
		f.freed(t, inner, "a nested ref read, once its reader let go")
	}
}

// TestSessionsHammer: many sessions at once put, release, read and end
// while the clock moves and sessions expire under them; at the end every
// object is freed and no session is left.
func TestSessionsHammer(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.SessionTTL, c.AnonymousRefTTL = testSessionTTL, testAnonymousTTL
		c.MaxSessions, c.MaxSessionsPerClient = 1000, 1000
	})
	const workers, rounds = 8, 40
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				c := edge.Caller{Principal: "client@10.0.0." + strconv.Itoa(w), Session: sessions.ID{14: byte(w), 15: byte(r)}}
				if r%4 == 3 {
					c.Session = sessions.ID{} // anonymous
				}
				// No t.Fatal off the test's goroutine: errors are reported.
				c, end, err := f.api.BeginCall(c)
				if err != nil {
					t.Error(err)
					return
				}
				a, b := ids.NewTaskID().Put(0), ids.NewTaskID().Put(0)
				for _, id := range []ids.ObjectID{a, b} {
					if err := f.api.Put(hangCtx(t), c, id, abi.Value{Codec: abi.CodecJSON, Data: []byte(`{"object_id":"` + a.String() + `"}`)}); err != nil {
						t.Error(err)
					}
				}
				if vals, err := f.api.Get(hangCtx(t), []ids.ObjectID{b}, time.Minute); err == nil {
					f.api.Read(c, vals)
				}
				f.api.Release(c, []ids.ObjectID{a})
				end()
				if r%2 == 0 {
					f.api.EndSession(c)
				}
			}
		})
	}
	moved := make(chan struct{})
	go func() {
		defer close(moved)
		for range 50 {
			f.sclk.Advance(testSessionTTL / 10)
		}
	}()
	wg.Wait()
	<-moved
	f.sclk.Advance(testAnonymousTTL + testSessionTTL)
	waitUntil(t, "every object to be freed", func() bool {
		rs, ss := RefStats(f.o)
		return rs.Objects == 0 && ss.Sessions == 0 && ss.Anonymous == 0
	})
}
