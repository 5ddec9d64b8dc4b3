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
		if w := procOf(pw); w.hasRunLocked(f.mod) {
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
