package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/rayhost/rayhost/client"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// meter shows a driver's task counts on w: on a terminal a status line
// redrawn in place (cleared while output is printed), otherwise a plain
// line when the counts changed, at most every lineEvery, and at the end.
type meter struct {
	mu        sync.Mutex
	w         io.Writer
	tty       bool
	p         client.RunProgress
	shown     bool // a status line is on the terminal
	lastLine  time.Time
	lastShown client.RunProgress
}

const lineEvery = 5 * time.Second

// newMeter returns nil (a meter that shows nothing) for mode "never".
func newMeter(w io.Writer, mode string) *meter {
	if mode == "never" {
		return nil
	}
	return &meter{w: w, tty: isTerminal(w), lastLine: time.Now()}
}

func format(p client.RunProgress) string {
	s := fmt.Sprintf("tasks: %d submitted, %d finished, %d failed", p.Submitted, p.Finished, p.Failed)
	if p.Cancelled > 0 {
		s += fmt.Sprintf(", %d cancelled", p.Cancelled)
	}
	if run := p.Submitted - p.Finished - p.Failed - p.Cancelled; run > 0 {
		s += fmt.Sprintf(", %d to go", run)
	}
	return s
}

func (m *meter) update(p client.RunProgress) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.p = p
	if m.tty {
		m.drawLocked()
		return
	}
	if time.Since(m.lastLine) >= lineEvery && p != m.lastShown {
		m.lineLocked()
	}
}

func (m *meter) lineLocked() {
	fmt.Fprintf(m.w, "rayhost: %s\n", format(m.p))
	m.lastLine, m.lastShown = time.Now(), m.p
}

func (m *meter) drawLocked() {
	if m.p.Submitted == 0 {
		return
	}
	fmt.Fprintf(m.w, "\r\x1b[K%s", format(m.p))
	m.shown = true
}

// clear takes the status line off the terminal before output is printed.
func (m *meter) clear() {
	if m == nil || !m.tty {
		return
	}
	m.mu.Lock()
	if m.shown {
		fmt.Fprint(m.w, "\r\x1b[K")
		m.shown = false
	}
	m.mu.Unlock()
}

// redraw puts the status line back after output.
func (m *meter) redraw() {
	if m == nil || !m.tty {
		return
	}
	m.mu.Lock()
	m.drawLocked()
	m.mu.Unlock()
}

// done prints the final counts on a line of their own.
func (m *meter) done() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tty && m.shown {
		fmt.Fprint(m.w, "\r\x1b[K")
	}
	if m.p.Submitted > 0 && (m.tty || m.p != m.lastShown) {
		m.lineLocked()
	}
}
