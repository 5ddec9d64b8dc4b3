package gossip

import (
	"context"
	"log"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Log rate limits. Serf and memberlist log a line for every packet they
// cannot decode, so garbage sent to the gossip port would otherwise turn
// into as many log lines (10 s of it wrote 85 MB). Each kind of message
// (its component, level and text up to the first colon) may log
// logKindBurst lines per logWindow, and all kinds together logTotalBurst;
// what is held back is counted and reported in one "suppressed" line when
// the next line of that kind is let through.
const (
	logWindow     = time.Second
	logKindBurst  = 5
	logTotalBurst = 50
	// logMaxKinds bounds the kinds tracked: attacker-chosen text must not
	// grow the table. Kinds beyond it share one budget.
	logMaxKinds = 256
)

// newLogLogger returns a *log.Logger for Serf and memberlist that writes to
// l. slog.NewLogLogger would log every line at one level; Serf and
// memberlist instead put the level in the text ("[DEBUG] memberlist: ..."),
// so logWriter reads it back from there.
func newLogLogger(l *slog.Logger) *log.Logger {
	return log.New(newLogWriter(l, time.Now), "", 0)
}

// logWriter parses lines of the form "[LEVEL] component: message". Lines
// without a level (memberlist has a few) are logged at Info. It rate-limits
// them per kind (see logKindBurst).
type logWriter struct {
	l   *slog.Logger
	now func() time.Time

	mu     sync.Mutex
	window time.Time // start of the current window
	total  int       // lines let through in it
	kinds  map[string]*logKind
}

// logKind counts one kind of line.
type logKind struct {
	n          int // lines let through in the current window
	suppressed int // held back since the last line let through
}

func newLogWriter(l *slog.Logger, now func() time.Time) *logWriter {
	return &logWriter{l: l, now: now, kinds: map[string]*logKind{}}
}

func (w *logWriter) Write(p []byte) (int, error) {
	level, component, msg := parseLogLine(string(p))
	ctx := context.Background()
	if !w.l.Enabled(ctx, level) {
		return len(p), nil
	}
	ok, suppressed := w.allow(component + "|" + level.String() + "|" + kindOf(msg))
	if !ok {
		return len(p), nil
	}
	attrs := make([]any, 0, 2)
	if component != "" {
		attrs = append(attrs, slog.String("component", component))
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
		w.l.Log(ctx, level, "suppressed similar log lines (rate limit)", append(attrs, slog.String("kind", kindOf(msg)))...)
		attrs = attrs[:len(attrs)-1]
	}
	w.l.Log(ctx, level, msg, attrs...)
	return len(p), nil
}

// allow reports whether a line of kind may be logged now and, if so, how
// many of its kind were held back before it.
func (w *logWriter) allow(kind string) (bool, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	if now.Sub(w.window) >= logWindow {
		w.window, w.total = now, 0
		for k, c := range w.kinds {
			if c.suppressed == 0 {
				delete(w.kinds, k)
			} else {
				c.n = 0
			}
		}
	}
	c := w.kinds[kind]
	if c == nil {
		if len(w.kinds) >= logMaxKinds {
			kind = "other"
			if c = w.kinds[kind]; c == nil {
				c = &logKind{}
				w.kinds[kind] = c
			}
		} else {
			c = &logKind{}
			w.kinds[kind] = c
		}
	}
	if c.n >= logKindBurst || w.total >= logTotalBurst {
		c.suppressed++
		return false, 0
	}
	c.n++
	w.total++
	s := c.suppressed
	c.suppressed = 0
	return true, s
}

// kindOf is what groups log lines for rate limiting: the message up to its
// first colon (memberlist's "Failed to decode ping request: <detail>
// from=<addr>"), without digits (a message type, an address), at most 64
// bytes.
func kindOf(msg string) string {
	if i := strings.IndexByte(msg, ':'); i >= 0 {
		msg = msg[:i]
	}
	msg = strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, msg)
	if len(msg) > 64 {
		msg = msg[:64]
	}
	return msg
}

// parseLogLine splits one Serf or memberlist log line into its level, its
// component ("serf", "memberlist") and the rest.
func parseLogLine(line string) (slog.Level, string, string) {
	line = strings.TrimSpace(line)
	level := slog.LevelInfo
	if rest, ok := strings.CutPrefix(line, "["); ok {
		if tag, after, ok := strings.Cut(rest, "]"); ok {
			known := true
			switch tag {
			case "TRACE", "DEBUG":
				// memberlist logs every stream and push/pull at DEBUG.
				level = slog.LevelDebug
			case "INFO":
				level = slog.LevelInfo
			case "WARN", "WARNING":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			default:
				known = false
			}
			if known {
				line = strings.TrimSpace(after)
			}
		}
	}
	for _, component := range []string{"serf", "memberlist"} {
		if rest, ok := strings.CutPrefix(line, component+": "); ok {
			return level, component, rest
		}
	}
	return level, "", line
}
