package objdir

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rayhost/rayhost/internal/clock"
)

const defaultPullIdle = 30 * time.Second

// pullWatch gives up a pull that makes no progress: every PullIdle it
// looks whether a byte came since it last looked, and if none did it
// cancels the pull's context with ErrStalled as the cause. (Looking at a
// counter, rather than resetting a timer per chunk, keeps the chunk path
// to one atomic add; a stall is noticed between PullIdle and twice it.)
type pullWatch struct {
	clk    clock.Clock
	idle   time.Duration
	cancel context.CancelCauseFunc
	cause  error

	progress atomic.Uint64 // reads that returned bytes, and the header
	seen     uint64        // progress at the last look (the timer's only)

	mu      sync.Mutex
	timer   clock.Timer
	stopped bool
	stalled bool
}

// watchPull returns ctx, to be cancelled if the pull from `from` stalls,
// and its watch, which the caller stops when the pull is over.
func (d *Dir) watchPull(ctx context.Context, from string) (context.Context, *pullWatch) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &pullWatch{clk: d.cfg.Clock, idle: d.cfg.PullIdle, cancel: cancel,
		cause: fmt.Errorf("%w: no bytes from %s for %s", ErrStalled, from, d.cfg.PullIdle)}
	w.mu.Lock()
	w.timer = w.clk.AfterFunc(w.idle, w.look)
	w.mu.Unlock()
	return ctx, w
}

func (w *pullWatch) look() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	if p := w.progress.Load(); p != w.seen {
		w.seen = p
		w.timer = w.clk.AfterFunc(w.idle, w.look)
		return
	}
	w.stalled = true
	w.cancel(w.cause)
}

// stop ends the watch and releases its context; it reports whether the
// pull was given up as stalled.
func (w *pullWatch) stop() bool {
	w.mu.Lock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
	stalled := w.stalled
	w.mu.Unlock()
	w.cancel(nil)
	return stalled
}

// err is the stall's error.
func (w *pullWatch) err() error { return w.cause }

// reader counts rc's progress for the watch.
func (w *pullWatch) reader(rc io.ReadCloser) io.ReadCloser {
	w.progress.Add(1) // the header came
	return &watchedReader{rc: rc, w: w}
}

type watchedReader struct {
	rc io.ReadCloser
	w  *pullWatch
}

func (r *watchedReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	if n > 0 {
		r.w.progress.Add(1)
	}
	return n, err
}

func (r *watchedReader) Close() error { return r.rc.Close() }

// WriteTo keeps the reader's own WriteTo (the pull's chunks written on as
// they come, with no copy through a buffer of io.Copy's) and counts each
// write.
func (r *watchedReader) WriteTo(dst io.Writer) (int64, error) {
	if wt, ok := r.rc.(io.WriterTo); ok {
		return wt.WriteTo(countingWriter{dst, r.w})
	}
	return io.Copy(countingWriter{dst, r.w}, struct{ io.Reader }{r})
}

type countingWriter struct {
	w  io.Writer
	pw *pullWatch
}

func (c countingWriter) Write(p []byte) (int, error) {
	c.pw.progress.Add(1)
	return c.w.Write(p)
}
