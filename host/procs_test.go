package host_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// workerPIDs lists the rayhost worker processes that are children of this
// test process.
func workerPIDs(t *testing.T) map[int]bool {
	t.Helper()
	out := map[int]bool{}
	entries, _ := os.ReadDir("/proc")
	me := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command: state, ppid, ...
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) > 1 && f[1] == me {
			out[pid] = true
		}
	}
	return out
}

// busyWorker returns the child worker using the most CPU time: the one
// running the test's task.
func busyWorker(t *testing.T, _ map[int]bool) int {
	t.Helper()
	best, bestTicks := 0, -1
	for pid := range workerPIDs(t) {
		stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		ticks, _ := strconv.Atoi(f[11]) // utime
		if ticks > bestTicks {
			best, bestTicks = pid, ticks
		}
	}
	return best
}
