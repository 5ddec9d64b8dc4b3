package workerpool

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/rayhost/rayhost/internal/clock"
)

func TestReap(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	c := clock.NewFake(t0)
	r, l := newRecorder(), &fakeLauncher{}
	r.keep = true // the test makes them idle, at the times it chooses
	p := newPool(t, Config{Warm: 1, Max: 10, IdleTTL: time.Minute, ReapEvery: time.Hour, Clock: c}, r, l)
	var ws []*Worker
	for range 5 {
		_ = p.Start()
		ws = append(ws, recv(t, r.ready))
	}
	for _, w := range ws { // idle since t0, t0+1s, … t0+4s
		if !p.Idle(w) {
			t.Fatal("Idle refused a new worker")
		}
		c.Advance(time.Second)
	}
	wantStats(t, p, Stats{Live: 5, Idle: 5})

	if n := p.Reap(t0.Add(time.Minute)); n != 0 {
		t.Fatalf("reaped %d idle for no longer than IdleTTL", n)
	}
	// ws[0] and ws[1] have been idle for longer than a minute, ws[2] not.
	if n := p.Reap(t0.Add(time.Minute + 1500*time.Millisecond)); n != 2 {
		t.Fatalf("reaped %d, want the 2 idle longer than IdleTTL", n)
	}
	gone := map[*Worker]bool{}
	for range 2 {
		e := recv(t, r.exited)
		if !errors.Is(e.err, errKilled) {
			t.Fatalf("a reaped worker exited with %v, want killed", e.err)
		}
		gone[e.w] = true
	}
	if !gone[ws[0]] || !gone[ws[1]] {
		t.Fatal("Reap did not stop the oldest idle workers")
	}
	wantStats(t, p, Stats{Live: 3, Idle: 3})

	// All are old now: only those beyond Warm+1 go, oldest first.
	if n := p.Reap(t0.Add(time.Hour)); n != 1 {
		t.Fatalf("reaped %d, want 1 (3 idle, Warm+1 kept)", n)
	}
	if e := recv(t, r.exited); e.w != ws[2] {
		t.Fatalf("reaped pid %d, want the oldest, %d", e.w.PID(), ws[2].PID())
	}
	for _, want := range []*Worker{ws[4], ws[3]} {
		if w, _ := p.Take(); w != want {
			t.Fatalf("took pid %d, want %d", w.PID(), want.PID())
		}
	}
	if n := p.Reap(t0.Add(24 * time.Hour)); n != 0 {
		t.Fatalf("reaped %d workers in use", n)
	}
	none(t, r.ready, "replacement")
}

func TestReaperRuns(t *testing.T) {
	c := clock.NewFake(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	r, l := newRecorder(), &fakeLauncher{}
	p := newPool(t, Config{Max: 3, IdleTTL: time.Minute, ReapEvery: 10 * time.Second, Clock: c}, r, l)
	for range 3 {
		_ = p.Start()
		recv(t, r.ready)
	}
	c.Advance(50 * time.Second) // reaps, none old enough
	wantStats(t, p, Stats{Live: 3, Idle: 3})
	c.Advance(20 * time.Second) // the next reap: two go, Warm+1 stay
	recv(t, r.exited)
	recv(t, r.exited)
	wantStats(t, p, Stats{Live: 1, Idle: 1})
}

func TestClose(t *testing.T) {
	r, l := newRecorder(), &fakeLauncher{}
	p := newPool(t, Config{Warm: 2, Max: 4}, r, l)
	var ws []*Worker
	for range 3 {
		_ = p.Start()
		ws = append(ws, recv(t, r.ready))
	}
	p.Take()
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		recv(t, r.exited) // Close returned after the Handler's calls
	}
	wantStats(t, p, Stats{})
	if err := p.Start(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v, want ErrClosed", err)
	}
	if p.Need(1) != 0 || p.Spare() || p.Idle(ws[0]) {
		t.Fatal("the pool took work after Close")
	}
	if err := p.Close(t.Context()); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
	none(t, r.ready, "Ready after Close")
	none(t, r.failed, "StartFailed after Close")
}

func TestCloseCutsStartsShort(t *testing.T) {
	r, l := newRecorder(), &fakeLauncher{gate: make(chan struct{})}
	p := newPool(t, Config{Max: 2}, r, l)
	_ = p.Start()
	_ = p.Start()
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	<-l.proc(101).killed
	<-l.proc(102).killed
	wantStats(t, p, Stats{})
	none(t, r.ready, "Ready")
	none(t, r.failed, "StartFailed")
}

// TestHammer starts, takes, idles, kills and reaps workers from many
// goroutines; run it with -race.
func TestHammer(t *testing.T) {
	const max = 8
	c := clock.NewFake(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	r, l := newRecorder(), &fakeLauncher{}
	p := newPool(t, Config{Warm: 2, Max: max, IdleTTL: 5 * time.Second, ReapEvery: 10 * time.Second, Clock: c}, r, l)
	// Starts cut short by kills fail; on a loaded machine more than the
	// recorder's buffer of them, whose sends would then block the pool's
	// goroutines and its Close. Nothing here checks them: drain them.
	stopDrain := make(chan struct{})
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			select {
			case <-r.failed:
			case <-stopDrain:
				return
			}
		}
	}()
	defer func() { close(stopDrain); <-drained }()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(g), 1))
			// Until workers have come and gone many times.
			for i := 0; i < 300 || len(r.ready) < 100; i++ {
				switch rnd.IntN(8) {
				case 0:
					_ = p.Start()
				case 1:
					p.Need(2)
				case 2:
					p.Spare()
				case 3, 4:
					if w, ok := p.Take(); ok {
						if rnd.IntN(4) == 0 {
							w.Kill()
						} else {
							p.Idle(w)
						}
					}
				case 5:
					c.Advance(time.Second) // the reaper runs every 10
					p.Reap(c.Now())
				case 6:
					for w := range p.Workers() {
						_ = w.PID()
					}
				case 7:
					s := p.Stats()
					if s.Idle > s.Live || s.Live+s.Starting > max || s.Starting < 0 {
						t.Errorf("stats %+v", s)
					}
				}
			}
		})
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if len(r.ready) != len(r.exited) {
		t.Fatalf("%d workers were ready, %d exited", len(r.ready), len(r.exited))
	}
	t.Logf("%d workers started", len(r.ready))
	wantStats(t, p, Stats{})
}
