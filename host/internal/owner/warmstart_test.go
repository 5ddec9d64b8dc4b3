package owner

import (
	"testing"

	"github.com/rayhost/rayhost/host/internal/workerpool"
	"github.com/rayhost/rayhost/internal/abi"
)

// TestFirstTaskOnDescribingWorker: a module's first task runs on the
// worker that described it (which has it compiled and an instance ready),
// even when other workers went idle after it.
func TestFirstTaskOnDescribingWorker(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Workers = 3 })
	waitUntil(t, "three idle workers", func() bool { return f.o.pool.Stats().Idle >= 3 })

	// The describing worker is the one worker that ran a task of the
	// module; make it the one that went idle first, so that taking the
	// most recently idle worker would not find it.
	f.o.mu.Lock()
	var describer *workerProc
	var idle []*workerpool.Worker
	for {
		pw, ok := f.o.pool.Take()
		if !ok {
			break
		}
		if w := procOf(pw); w.moduleScoreLocked(f.mod) == scoreRan {
			if describer != nil {
				f.o.mu.Unlock()
				t.Fatal("two workers ran the module's describe")
			}
			describer = w
			continue
		}
		idle = append(idle, pw)
	}
	if describer == nil || len(idle) < 2 {
		f.o.mu.Unlock()
		t.Fatalf("describer %v, %d other idle workers", describer, len(idle))
	}
	f.o.pool.Idle(describer.pw)
	for _, pw := range idle {
		f.o.pool.Idle(pw)
	}
	f.o.mu.Unlock()

	id, refs := f.submit(t, "sleep", nil, tenMinutes)
	f.waitState(t, id, stateRunning)
	f.o.mu.Lock()
	var ranOn *workerProc
	if tk := f.o.tasks[id]; tk != nil {
		ranOn = tk.worker
	}
	f.o.mu.Unlock()
	if ranOn != describer {
		t.Fatalf("the first task runs on another worker than the one that described its module")
	}
	if err := f.api.Cancel(refs[0], false, true); err != nil {
		t.Fatal(err)
	}
	if te := f.failure(t, refs[0]); te.Kind != abi.ErrorCancelled {
		t.Fatalf("the cancelled task: %+v", te)
	}
}

// TestRestartReadsDescriptionBack: a module registered again on an owner
// restarted on the same data directory runs no describe task (no worker
// ran a task of it before its first task), is compiled ahead by a worker,
// and runs.
func TestRestartReadsDescriptionBack(t *testing.T) {
	dir := t.TempDir()
	first := newFixture(t, func(c *Config) { c.DataDir = dir })
	first.o.mu.Lock()
	described := 0
	for pw := range first.o.pool.Workers() {
		if w := procOf(pw); w != nil && w.moduleScoreLocked(first.mod) == scoreRan {
			described++
		}
	}
	first.o.mu.Unlock()
	if described != 1 {
		t.Fatalf("%d workers ran the first registration's describe, want 1", described)
	}
	first.o.Close()

	f := newFixture(t, func(c *Config) { c.DataDir = dir; c.Workers = 3 })
	if f.mod != first.mod {
		t.Fatalf("digest %s after the restart, was %s", f.mod, first.mod)
	}
	waitUntil(t, "three idle workers", func() bool { return f.o.pool.Stats().Idle >= 3 })
	f.o.mu.Lock()
	ran, loading := 0, 0
	for pw := range f.o.pool.Workers() {
		switch procOf(pw).moduleScoreLocked(f.mod) {
		case scoreRan:
			ran++
		case scoreLoading:
			loading++
		}
	}
	f.o.mu.Unlock()
	if ran != 0 || loading == 0 {
		t.Fatalf("after the restart's registration: %d workers ran a task of the module (a describe), %d compile it ahead; want 0 and some", ran, loading)
	}
	var sum int
	f.call(t, "add", &sum, 2, 3)
	if sum != 5 {
		t.Fatalf("add(2, 3) = %d", sum)
	}
}
