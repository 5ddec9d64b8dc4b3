package clock

import (
	"testing"
	"time"
)

func TestFake(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewFake(start)
	var fired []int
	c.AfterFunc(2*time.Second, func() { fired = append(fired, 2) })
	c.AfterFunc(time.Second, func() { fired = append(fired, 1) })
	stopped := c.AfterFunc(time.Second, func() { fired = append(fired, -1) })
	c.AfterFunc(3*time.Second, func() { fired = append(fired, 3) })
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop: want true once, then false")
	}
	c.Advance(999 * time.Millisecond)
	if len(fired) != 0 {
		t.Fatalf("fired early: %v", fired)
	}
	c.Advance(1500 * time.Millisecond)
	if got := c.Now().Sub(start); got != 2499*time.Millisecond {
		t.Fatalf("Now moved %v", got)
	}
	if len(fired) != 2 || fired[0] != 1 || fired[1] != 2 {
		t.Fatalf("fired %v, want [1 2]", fired)
	}
	if c.Pending() != 1 {
		t.Fatalf("pending %d, want 1", c.Pending())
	}
	c.Advance(time.Hour)
	if len(fired) != 3 || c.Pending() != 0 {
		t.Fatalf("fired %v, pending %d", fired, c.Pending())
	}
}

func TestFakeAdded(t *testing.T) {
	c := NewFake(time.Time{})
	added := c.Added()
	go c.AfterFunc(time.Minute, func() {})
	<-added // the timer is armed: no sleep needed
	if c.Pending() != 1 {
		t.Fatalf("pending %d", c.Pending())
	}
}

func TestReal(t *testing.T) {
	var c Clock = Real{}
	done := make(chan struct{})
	c.AfterFunc(time.Millisecond, func() { close(done) })
	select {
	case <-done:
	case <-time.After(time.Minute): // hang guard
		t.Fatal("Real.AfterFunc never ran")
	}
}
