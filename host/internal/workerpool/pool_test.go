package workerpool

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/rayhost/rayhost/internal/clock"
	"github.com/rayhost/rayhost/internal/ipc"
)

func TestNewRejectsBadConfig(t *testing.T) {
	l, r := &fakeLauncher{}, newRecorder()
	for name, cfg := range map[string]Config{
		"no launcher":  {Handler: r, Max: 1},
		"no handler":   {Launcher: l, Max: 1},
		"no max":       {Launcher: l, Handler: r},
		"warm > max":   {Launcher: l, Handler: r, Warm: 3, Max: 2},
		"negative ttl": {Launcher: l, Handler: r, Max: 1, IdleTTL: -1},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New: %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func wantStats(t testing.TB, p *Pool, want Stats) {
	t.Helper()
	if got := p.Stats(); got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
}

func TestReadyIdleTakeLastInFirstOut(t *testing.T) {
	r, l := newRecorder(), &fakeLauncher{}
	p := newPool(t, Config{Max: 3}, r, l)
	for range 3 {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
	}
	var ws []*Worker
	for range 3 {
		w := recv(t, r.ready)
		if w.Value != strconv.Itoa(w.PID()) { // the recorder keeps the hello
			t.Fatalf("hello %v for pid %d", w.Value, w.PID())
		}
		ws = append(ws, w)
	}
	wantStats(t, p, Stats{Live: 3, Idle: 3})
	for range 3 {
		if _, ok := p.Take(); !ok {
			t.Fatal("no idle worker")
		}
	}
	if _, ok := p.Take(); ok {
		t.Fatal("took a fourth worker of three")
	}
	wantStats(t, p, Stats{Live: 3})
	for _, w := range ws {
		if !p.Idle(w) {
			t.Fatal("Idle refused a worker in use")
		}
	}
	if p.Idle(ws[0]) {
		t.Fatal("Idle took an idle worker twice")
	}
	for i := 2; i >= 0; i-- {
		if w, _ := p.Take(); w != ws[i] {
			t.Fatalf("took pid %d, want %d (the last made idle)", w.PID(), ws[i].PID())
		}
	}
	n := 0
	for range p.Workers() {
		n++
	}
	if n != 3 {
		t.Fatalf("Workers yields %d, want 3", n)
	}
}

// TestTakeBest: TakeBest takes the most recently idle of the workers
// score rates highest; the idle list keeps its order for the others.
func TestTakeBest(t *testing.T) {
	r, l := newRecorder(), &fakeLauncher{}
	p := newPool(t, Config{Max: 5}, r, l)
	for range 5 {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
	}
	var ws []*Worker
	for range 5 {
		ws = append(ws, recv(t, r.ready))
	}
	// Idle, oldest first: ws[0] … ws[4].
	for range ws {
		p.Take()
	}
	for _, w := range ws {
		p.Idle(w)
	}
	scores := func(m map[*Worker]int) func(*Worker) int {
		return func(w *Worker) int { return m[w] }
	}
	for _, tt := range []struct {
		name  string
		score func(*Worker) int
		want  *Worker
	}{
		{"an older idle worker rated higher", scores(map[*Worker]int{ws[1]: 1}), ws[1]},
		{"the highest rated, not the most recent rated", scores(map[*Worker]int{ws[0]: 2, ws[3]: 1}), ws[0]},
		{"the most recent of those rated highest", scores(map[*Worker]int{ws[2]: 1, ws[3]: 1}), ws[3]},
		{"all alike: the most recent", scores(nil), ws[4]},
		{"no score: the most recent", nil, ws[2]},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if w, ok := p.TakeBest(tt.score); !ok || w != tt.want {
				t.Fatalf("took pid %d, want %d", w.PID(), tt.want.PID())
			}
		})
	}
	wantStats(t, p, Stats{Live: 5})
}

func TestMaxWorkers(t *testing.T) {
	r, l := newRecorder(), &fakeLauncher{gate: make(chan struct{})}
	p := newPool(t, Config{Max: 2}, r, l)
	for range 2 {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Start(); !errors.Is(err, ErrFull) {
		t.Fatalf("a third Start: %v, want ErrFull", err)
	}
	if n := p.Need(3); n != 0 {
		t.Fatalf("Need started %d beyond Max", n)
	}
	if p.Spare() {
		t.Fatal("Spare started a worker beyond Max")
	}
	wantStats(t, p, Stats{Starting: 2})
	l.open()
	recv(t, r.ready)
	recv(t, r.ready)
	wantStats(t, p, Stats{Live: 2, Idle: 2})
	if err := p.Start(); !errors.Is(err, ErrFull) {
		t.Fatalf("Start with Max running: %v, want ErrFull", err)
	}
}

func TestNeedAndSpare(t *testing.T) {
	r, l := newRecorder(), &fakeLauncher{gate: make(chan struct{})}
	p := newPool(t, Config{Max: 4}, r, l)
	for _, c := range []struct{ need, started int }{{2, 2}, {2, 0}, {3, 1}} {
		if n := p.Need(c.need); n != c.started {
			t.Fatalf("Need(%d) started %d, want %d", c.need, n, c.started)
		}
	}
	if p.Spare() {
		t.Fatal("Spare started one while others start")
	}
	l.open()
	ws := []*Worker{recv(t, r.ready), recv(t, r.ready), recv(t, r.ready)}
	if p.Spare() {
		t.Fatal("Spare started one beside idle workers")
	}
	for range ws {
		p.Take()
	}
	if !p.Spare() {
		t.Fatal("Spare started none with none idle or starting")
	}
	if p.Spare() {
		t.Fatal("Spare started a second spare")
	}
	recv(t, r.ready)
	wantStats(t, p, Stats{Live: 4, Idle: 1})
}

func TestStartFailed(t *testing.T) {
	t.Run("launch", func(t *testing.T) {
		boom := errors.New("boom")
		r, l := newRecorder(), &fakeLauncher{err: boom}
		p := newPool(t, Config{Max: 1}, r, l)
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		if err := recv(t, r.failed); !errors.Is(err, ErrStart) || !errors.Is(err, boom) {
			t.Fatalf("StartFailed(%v), want ErrStart and the launcher's error", err)
		}
		wantStats(t, p, Stats{})
	})
	t.Run("frame before ready", func(t *testing.T) {
		r, l := newRecorder(), &fakeLauncher{first: ipc.TypeDone}
		p := newPool(t, Config{Max: 1}, r, l)
		_ = p.Start()
		if err := recv(t, r.failed); !errors.Is(err, ErrStart) || !errors.Is(err, ErrProtocol) {
			t.Fatalf("StartFailed(%v), want ErrStart and ErrProtocol", err)
		}
		<-l.proc(101).killed
		wantStats(t, p, Stats{})
	})
	t.Run("timeout", func(t *testing.T) {
		c := clock.NewFake(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
		r, l := newRecorder(), &fakeLauncher{gate: make(chan struct{})}
		p := newPool(t, Config{Max: 1, StartTimeout: time.Minute, ReapEvery: time.Hour, Clock: c}, r, l)
		armed := c.Added()
		_ = p.Start()
		<-armed
		c.Advance(time.Minute)
		if err := recv(t, r.failed); !errors.Is(err, ErrStart) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("StartFailed(%v), want ErrStart and a deadline", err)
		}
		<-l.proc(101).killed
	})
}

func TestFrames(t *testing.T) {
	r, l := newRecorder(), &fakeLauncher{}
	r.frameErr = "bad"
	p := newPool(t, Config{Max: 1}, r, l)
	_ = p.Start()
	w := recv(t, r.ready)
	if err := w.Send(ipc.TypeLog, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if f := recv(t, r.frames); f != (frame{w, ipc.TypeLog, "hello"}) {
		t.Fatalf("frame %+v", f)
	}
	w.Cancel([16]byte{1})
	if f := recv(t, r.frames); f.typ != ipc.TypeCancel {
		t.Fatalf("frame %+v, want the cancel echoed", f)
	}

	// A frame the handler refuses kills the worker.
	_ = w.Send(ipc.TypeLog, []byte("bad"))
	if e := recv(t, r.exited); e.w != w || !errors.Is(e.err, errKilled) {
		t.Fatalf("exited %+v, want the worker killed", e)
	}
	wantStats(t, p, Stats{})
	if p.Idle(w) {
		t.Fatal("Idle took a worker that exited")
	}
	if err := w.Exec(&ipc.Exec{}); !errors.Is(err, ErrGone) {
		t.Fatalf("Exec to an exited worker: %v, want ErrGone", err)
	}
	none(t, r.ready, "replacement")
}

func TestExitedAfterDeath(t *testing.T) {
	r, l := newRecorder(), &fakeLauncher{}
	p := newPool(t, Config{Max: 2}, r, l)
	_ = p.Start()
	w := recv(t, r.ready)
	crash := errors.New("segfault")
	l.proc(w.PID()).crash(crash)
	if e := recv(t, r.exited); e.w != w || !errors.Is(e.err, crash) {
		t.Fatalf("exited %+v, want the crash", e)
	}
	wantStats(t, p, Stats{}) // Warm 0: no replacement
	if _, ok := p.Take(); ok {
		t.Fatal("took a worker that exited")
	}
	if p.Idle(w) {
		t.Fatal("Idle took a worker that exited")
	}
}

func TestWarmWorkerReplaced(t *testing.T) {
	r, l := newRecorder(), &fakeLauncher{}
	p := newPool(t, Config{Warm: 1, Max: 2}, r, l)
	_ = p.Start()
	w := recv(t, r.ready)
	l.proc(w.PID()).crash(errors.New("segfault"))
	recv(t, r.exited)
	if w2 := recv(t, r.ready); w2 == w {
		t.Fatal("the replacement is the dead worker")
	}
	wantStats(t, p, Stats{Live: 1, Idle: 1})
}
