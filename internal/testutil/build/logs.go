package build

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

// TestLog returns a writer that sends log output to t.Log, so it shows only
// for failing tests, and goes quiet once the test has ended (t.Log would
// panic then). Its cleanup is registered before the caller's (such as a
// host's Close), so it runs after them.
func TestLog(t testing.TB) *TestWriter {
	w := &TestWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.stopped = true
		w.mu.Unlock()
	})
	return w
}

// TestWriter is TestLog's writer.
type TestWriter struct {
	t       testing.TB
	mu      sync.Mutex
	stopped bool
}

func (w *TestWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// LogBuffer keeps log output for a test to read, safe for concurrent use.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
