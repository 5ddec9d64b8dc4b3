package gossip

import (
	"context"
	"log"
	"log/slog"
	"strings"
)

// newLogLogger returns a *log.Logger for Serf and memberlist that writes to
// l. slog.NewLogLogger would log every line at one level; Serf and
// memberlist instead put the level in the text ("[DEBUG] memberlist: ..."),
// so logWriter reads it back from there.
func newLogLogger(l *slog.Logger) *log.Logger {
	return log.New(logWriter{l: l}, "", 0)
}

// logWriter parses lines of the form "[LEVEL] component: message". Lines
// without a level (memberlist has a few) are logged at Info.
type logWriter struct {
	l *slog.Logger
}

func (w logWriter) Write(p []byte) (int, error) {
	level, component, msg := parseLogLine(string(p))
	ctx := context.Background()
	if !w.l.Enabled(ctx, level) {
		return len(p), nil
	}
	if component == "" {
		w.l.Log(ctx, level, msg)
	} else {
		w.l.Log(ctx, level, msg, slog.String("component", component))
	}
	return len(p), nil
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
