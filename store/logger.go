package store

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// badgerLogger adapts a *slog.Logger to badger's Logger. Badger's info and
// debug messages (table flushes, compactions, replay progress) are logged
// at debug level, so they only show when debug logging is on.
type badgerLogger struct {
	l *slog.Logger
}

var _ badger.Logger = badgerLogger{}

func newBadgerLogger(l *slog.Logger) badgerLogger {
	return badgerLogger{l: l.With(slog.String("component", "badger"))}
}

func (b badgerLogger) Errorf(format string, args ...any) { b.log(slog.LevelError, format, args) }

func (b badgerLogger) Warningf(format string, args ...any) { b.log(slog.LevelWarn, format, args) }

func (b badgerLogger) Infof(format string, args ...any) { b.log(slog.LevelDebug, format, args) }

func (b badgerLogger) Debugf(format string, args ...any) { b.log(slog.LevelDebug, format, args) }

func (b badgerLogger) log(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !b.l.Enabled(ctx, level) {
		return
	}
	b.l.Log(ctx, level, strings.TrimSpace(fmt.Sprintf(format, args...)))
}
