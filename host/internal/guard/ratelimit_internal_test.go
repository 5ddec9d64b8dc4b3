package guard

import (
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a fake clock for the rate limiter.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func limiter(c *clock, rate float64, burst int) *rateLimiter {
	l := newRateLimiter(rate, burst)
	l.now = c.now
	return l
}

func TestRateLimiterRefills(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	l := limiter(c, 2, 3) // 2 a second, 3 at once
	for i := range 3 {
		if !l.allow("a") {
			t.Fatalf("call %d of a burst of 3 refused", i+1)
		}
	}
	if l.allow("a") {
		t.Fatal("a 4th call at once allowed")
	}
	if !l.allow("b") {
		t.Fatal("another key shares a's bucket")
	}
	c.add(500 * time.Millisecond) // one token back
	if !l.allow("a") || l.allow("a") {
		t.Fatal("half a second at 2/s did not give back exactly one call")
	}
	c.add(time.Hour) // full, never more than the burst
	for i := range 3 {
		if !l.allow("a") {
			t.Fatalf("after an hour: call %d refused", i+1)
		}
	}
	if l.allow("a") {
		t.Fatal("the bucket grew past its burst")
	}
}

// TestRateLimiterManyKeys: a client that cycles through many addresses
// cannot grow the limiter without bound; past maxRateKeys, new keys share
// one bucket (and so are limited together), and full buckets are forgotten.
func TestRateLimiterManyKeys(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	l := limiter(c, 0.001, 1)
	for i := range maxRateKeys {
		if !l.allow("k" + strconv.Itoa(i)) {
			t.Fatalf("key %d refused its first call", i)
		}
	}
	if !l.allow("new1") {
		t.Fatal("the first key past the bound refused")
	}
	if l.allow("new2") {
		t.Fatal("a second key past the bound did not share the first's bucket")
	}
	if len(l.buckets) > maxRateKeys+1 {
		t.Fatalf("%d buckets, the bound is %d", len(l.buckets), maxRateKeys)
	}
	c.add(2000 * time.Second) // every bucket full again: forgotten
	if !l.allow("new3") {
		t.Fatal("a new key after the others refilled refused")
	}
	if len(l.buckets) > 2 {
		t.Fatalf("%d buckets kept after they all refilled", len(l.buckets))
	}
}

// TestDeadlineBody: the deadline is cleared once the body is read whole,
// once, and not after another error.
func TestDeadlineBody(t *testing.T) {
	cleared := 0
	b := &deadlineBody{ReadCloser: io.NopCloser(strings.NewReader("abc")), clear: func() { cleared++ }}
	if _, err := io.ReadAll(b); err != nil {
		t.Fatal(err)
	}
	_, _ = b.Read(make([]byte, 1))
	if cleared != 1 {
		t.Fatalf("cleared %d times, want 1", cleared)
	}
	cleared = 0
	failing := &deadlineBody{ReadCloser: io.NopCloser(io.MultiReader(strings.NewReader("ab"), errReader{})), clear: func() { cleared++ }}
	if _, err := io.ReadAll(failing); err == nil {
		t.Fatal("no error")
	}
	if cleared != 0 {
		t.Fatal("cleared after a read that failed")
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("i/o timeout") }

// TestRateLimiterHammer: concurrent calls on one key get exactly the burst.
func TestRateLimiterHammer(t *testing.T) {
	l := newRateLimiter(0, 50)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if l.allow("k") {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n != 50 {
		t.Fatalf("%d calls allowed, the burst is 50", n)
	}
}
