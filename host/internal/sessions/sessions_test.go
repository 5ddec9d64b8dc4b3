package sessions

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rayhost/rayhost/host/internal/refcount"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/kinds"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func sid(n byte) ID { return ID{15: n} }

func newTable(t *testing.T, mutate func(*Config)) *Table {
	t.Helper()
	cfg := Config{TTL: time.Minute, AnonymousTTL: 10 * time.Minute, Max: 100, MaxPerPrincipal: 10}
	if mutate != nil {
		mutate(&cfg)
	}
	tb, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func begin(t *testing.T, tb *Table, k Key, now time.Time) *Session {
	t.Helper()
	s, err := tb.Begin(k, now)
	if err != nil {
		t.Fatalf("Begin %v: %v", k, err)
	}
	return s
}

func TestParseID(t *testing.T) {
	good := strings.Repeat("0123456789abcdef", 2)
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"lower hex", good, true},
		{"upper hex", strings.ToUpper(good), true},
		{"short", good[:31], false},
		{"long", good + "0", false},
		{"not hex", strings.Repeat("zz", 16), false},
		{"all zeros", strings.Repeat("0", 32), false},
		{"empty", "", false},
		{"huge", strings.Repeat("a", 1<<16), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := ParseID(tc.in)
			if tc.ok {
				if err != nil || id.String() != strings.ToLower(tc.in) {
					t.Fatalf("ParseID(%q) = %s, %v", tc.in, id, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidID) || !errors.Is(err, kinds.ErrInvalidArgument) {
				t.Fatalf("ParseID(%q): %v, want ErrInvalidID (invalid argument)", tc.in, err)
			}
			if len(err.Error()) > 200 {
				t.Fatalf("the error repeats the input: %d bytes", len(err.Error()))
			}
		})
	}
}

func TestNewChecksItsConfig(t *testing.T) {
	good := Config{TTL: time.Minute, AnonymousTTL: time.Minute, Max: 1, MaxPerPrincipal: 1}
	for name, mutate := range map[string]func(*Config){
		"no TTL":           func(c *Config) { c.TTL = 0 },
		"negative anon":    func(c *Config) { c.AnonymousTTL = -1 },
		"no sessions":      func(c *Config) { c.Max = 0 },
		"none a principal": func(c *Config) { c.MaxPerPrincipal = 0 },
	} {
		cfg := good
		mutate(&cfg)
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestSessionsEndWhenNotSeen: a session ends TTL after it was last seen
// (a call's beginning or end), never while a call runs in it; sessions end
// in the order they were last seen.
func TestSessionsEndWhenNotSeen(t *testing.T) {
	tb := newTable(t, nil)
	a, b := Key{"p", sid(1)}, Key{"p", sid(2)}
	sa := begin(t, tb, a, t0)
	tb.Finish(sa, t0)
	sb := begin(t, tb, b, t0.Add(10*time.Second))
	tb.Finish(sb, t0.Add(20*time.Second))
	if next, ok := tb.Next(); !ok || !next.Equal(t0.Add(time.Minute)) {
		t.Fatalf("Next = %v %v, want a's end", next, ok)
	}
	if exp := tb.Expire(t0.Add(time.Minute - 1)); len(exp.Sessions) != 0 {
		t.Fatalf("ended early: %v", exp.Sessions)
	}
	// Seen again just in time: a lives on, b goes first.
	tb.Finish(begin(t, tb, a, t0.Add(50*time.Second)), t0.Add(50*time.Second))
	exp := tb.Expire(t0.Add(80 * time.Second))
	if !slices.Equal(exp.Sessions, []refcount.Holder{sb.Holder()}) {
		t.Fatalf("at 80 s ended %v, want b's %s", exp.Sessions, sb.Holder())
	}
	if _, ok := tb.Lookup(b); ok {
		t.Fatal("b is still in the table")
	}
	exp = tb.Expire(t0.Add(110 * time.Second))
	if !slices.Equal(exp.Sessions, []refcount.Holder{sa.Holder()}) {
		t.Fatalf("at 110 s ended %v, want a's", exp.Sessions)
	}
	if _, ok := tb.Next(); ok || tb.Stats().Sessions != 0 {
		t.Fatalf("an empty table has work: %+v", tb.Stats())
	}
}

func TestACallInFlightKeepsItsSessionAlive(t *testing.T) {
	tb := newTable(t, nil)
	k := Key{"p", sid(1)}
	s := begin(t, tb, k, t0)
	if _, ok := tb.Next(); ok {
		t.Fatal("a session with a call in flight is due to end")
	}
	if exp := tb.Expire(t0.Add(time.Hour)); len(exp.Sessions) != 0 {
		t.Fatalf("a session with a call in flight ended: %v", exp.Sessions)
	}
	// Two calls at once: the first to finish does not make it idle.
	s2 := begin(t, tb, k, t0.Add(time.Hour))
	if s2 != s {
		t.Fatal("the same key gave another session")
	}
	tb.Finish(s, t0.Add(time.Hour))
	if exp := tb.Expire(t0.Add(3 * time.Hour)); len(exp.Sessions) != 0 {
		t.Fatal("ended with a call still in flight")
	}
	tb.Finish(s2, t0.Add(3*time.Hour))
	if exp := tb.Expire(t0.Add(3*time.Hour + time.Minute)); len(exp.Sessions) != 1 {
		t.Fatalf("not ended a TTL after its last call: %v", exp.Sessions)
	}
}

// TestSessionsArePerPrincipal: the same ID sent by two principals names
// two sessions with two holders; ending one leaves the other.
func TestSessionsArePerPrincipal(t *testing.T) {
	tb := newTable(t, nil)
	mine, theirs := Key{"client@10.0.0.1", sid(7)}, Key{"client@10.0.0.2", sid(7)}
	sm := begin(t, tb, mine, t0)
	st := begin(t, tb, theirs, t0)
	if sm.Holder() == st.Holder() {
		t.Fatalf("two principals share holder %s", sm.Holder())
	}
	if h, ok := tb.End(theirs); !ok || h != st.Holder() {
		t.Fatalf("End(theirs) = %s %v", h, ok)
	}
	if s, ok := tb.Lookup(mine); !ok || s != sm {
		t.Fatal("ending another principal's session ended mine")
	}
	if _, ok := tb.End(theirs); ok {
		t.Fatal("a session ended twice")
	}
}

func TestEndDuringACall(t *testing.T) {
	tb := newTable(t, nil)
	k := Key{"p", sid(1)}
	s := begin(t, tb, k, t0)
	h, ok := tb.End(k)
	if !ok || h != s.Holder() {
		t.Fatalf("End = %s %v", h, ok)
	}
	if !tb.Finish(s, t0) {
		t.Fatal("a call that ran past its session's end was not told to drop again")
	}
	// The ID names a new session now, with a new holder.
	s2 := begin(t, tb, k, t0)
	if s2 == s || s2.Holder() == s.Holder() {
		t.Fatalf("a begun-again session reuses the ended one's holder %s", s.Holder())
	}
	if tb.Finish(s2, t0) {
		t.Fatal("a live session's call told to drop")
	}
}

func TestCaps(t *testing.T) {
	tb := newTable(t, func(c *Config) { c.Max, c.MaxPerPrincipal = 3, 2 })
	for i := range 2 {
		begin(t, tb, Key{"a", sid(byte(i + 1))}, t0)
	}
	_, err := tb.Begin(Key{"a", sid(3)}, t0)
	if !errors.Is(err, ErrTooMany) || !errors.Is(err, kinds.ErrResourceExhausted) || !strings.Contains(err.Error(), "--max-sessions-per-client") {
		t.Fatalf("a principal's third session: %v", err)
	}
	// Its existing sessions still work; another principal gets one.
	begin(t, tb, Key{"a", sid(1)}, t0)
	begin(t, tb, Key{"b", sid(1)}, t0)
	if _, err := tb.Begin(Key{"c", sid(1)}, t0); !errors.Is(err, ErrTooMany) || !strings.Contains(err.Error(), "--max-sessions") {
		t.Fatalf("the host's fourth session: %v", err)
	}
	// Ending one makes room.
	if _, ok := tb.End(Key{"a", sid(2)}); !ok {
		t.Fatal("End")
	}
	begin(t, tb, Key{"c", sid(1)}, t0)
	if s := tb.Stats(); s.Sessions != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestAnonymousHoldsRunOutInOrder(t *testing.T) {
	tb := newTable(t, nil)
	x, y, z := ids.TaskID{1}.Return(0), ids.TaskID{2}.Put(0), ids.TaskID{3}.Return(0)
	tb.Hold("p", x, t0)
	tb.Hold("q", y, t0.Add(time.Minute))
	tb.Hold("p", z, t0.Add(2*time.Minute))
	if next, ok := tb.Next(); !ok || !next.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("Next = %v %v", next, ok)
	}
	exp := tb.Expire(t0.Add(11 * time.Minute))
	want := []Anonymous{{AnonymousHolder("p"), x}, {AnonymousHolder("q"), y}}
	if !slices.Equal(exp.Anonymous, want) {
		t.Fatalf("at 11 min: %v, want %v", exp.Anonymous, want)
	}
	if s := tb.Stats(); s.Anonymous != 1 {
		t.Fatalf("stats %+v", s)
	}
	exp = tb.Expire(t0.Add(12 * time.Minute))
	if !slices.Equal(exp.Anonymous, []Anonymous{{AnonymousHolder("p"), z}}) {
		t.Fatalf("at 12 min: %v", exp.Anonymous)
	}
	if _, ok := tb.Next(); ok {
		t.Fatal("nothing pending, yet Next")
	}
}

// TestNextIsTheEarliest: with a short anonymous TTL, a hold made after a
// session was last seen may run out first.
func TestNextIsTheEarliest(t *testing.T) {
	tb := newTable(t, func(c *Config) { c.TTL, c.AnonymousTTL = 10*time.Minute, time.Minute })
	tb.Finish(begin(t, tb, Key{"p", sid(1)}, t0), t0)
	tb.Hold("p", ids.TaskID{1}.Return(0), t0.Add(time.Minute))
	if next, _ := tb.Next(); !next.Equal(t0.Add(2 * time.Minute)) {
		t.Fatalf("Next = %v, want the hold's", next)
	}
}

// TestAnonymousBurstGivesMemoryBack: a burst of holds that ran out does not
// keep its memory.
func TestAnonymousBurstGivesMemoryBack(t *testing.T) {
	tb := newTable(t, nil)
	for i := range 100_000 {
		tb.Hold("p", ids.TaskID{byte(i), byte(i >> 8), byte(i >> 16)}.Return(0), t0)
	}
	tb.Hold("p", ids.TaskID{0xff}.Return(0), t0.Add(time.Hour))
	if exp := tb.Expire(t0.Add(11 * time.Minute)); len(exp.Anonymous) != 100_000 {
		t.Fatalf("%d ran out", len(exp.Anonymous))
	}
	if c := cap(tb.anon); c > 1024 {
		t.Fatalf("the burst's %d slots are kept for 1 hold", c)
	}
}
