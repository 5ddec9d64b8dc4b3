package microbench

import (
	"bytes"
	"regexp"
	"strconv"
	"sync"
)

// gcTrace reads a Go process's GODEBUG=gctrace=1 lines (its stderr) and
// keeps the live heap of the last collection: of a line's "A->B->C MB",
// C is the heap the collection found reachable. It is the figure a leak of
// bookkeeping grows; RSS adds the garbage made since (the runtime lets the
// heap reach twice the live heap before it collects, GOGC=100) and freed
// pages it has not given back yet.
type gcTrace struct {
	mu      sync.Mutex
	partial []byte
	live    float64 // MiB; -1 before the first collection
	gcs     int
}

var gcLine = regexp.MustCompile(`^gc \d+ @.* (\d+)->(\d+)->(\d+) MB`)

func newGCTrace() *gcTrace { return &gcTrace{live: -1} }

// Write takes the process's stderr; lines other than the collector's are
// dropped.
func (g *gcTrace) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.partial = append(g.partial, p...)
	for {
		i := bytes.IndexByte(g.partial, '\n')
		if i < 0 {
			break
		}
		if m := gcLine.FindSubmatch(g.partial[:i]); m != nil {
			if mb, err := strconv.ParseFloat(string(m[3]), 64); err == nil {
				g.live, g.gcs = mb, g.gcs+1
			}
		}
		g.partial = g.partial[i+1:]
	}
	if len(g.partial) > 64<<10 { // not a trace: never hold much of it
		g.partial = g.partial[:0]
	}
	return len(p), nil
}

// Live is the live heap after the last collection, in MiB (the runtime
// prints whole MiB), or -1 before the first.
func (g *gcTrace) Live() float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.live
}
