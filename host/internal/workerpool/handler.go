package workerpool

import "github.com/rayhost/rayhost/internal/ipc"

// KeepFrameBytes: a worker's frame longer than this is read into memory of
// its own, which a Handler may keep; shorter ones share one read buffer.
const KeepFrameBytes = 1 << 20

// Handler is told of a pool's workers: the host's side of them. The pool
// calls it from its own goroutines, never with its lock held, so a Handler
// may take its own lock and call the Pool. Calls about one worker come in
// order: Ready, then its Frames, then Exited; calls about different
// workers are concurrent.
type Handler interface {
	// Ready: a new worker said Ready; hello is the Ready payload ("pid", or
	// "pid\n" and its confinement report as JSON: launch.Confinement.Note
	// reads it). The handler sets w.Value, then makes w idle (Pool.Idle)
	// or uses it; until Ready returns or Idle is called, w counts as
	// starting. Its frames are read once Ready has returned.
	Ready(w *Worker, hello []byte)
	// StartFailed: a worker did not start (err wraps ErrStart; the pool has
	// logged it). Not called for starts that Close cut short.
	StartFailed(err error)
	// Frame: w sent a frame; payload is valid until Frame returns, unless
	// it is longer than KeepFrameBytes: then it is memory of its own that
	// the pool never reuses, which the handler may keep (a large put is
	// stored without a copy). An error is a protocol error: the pool logs
	// it and kills w (Exited follows).
	Frame(w *Worker, typ ipc.Type, payload []byte) error
	// Exited: w's process has exited (err is how) and w has left the
	// pool's tables (Stats, Workers; Idle refuses it). Called once for
	// every worker Ready was called for, Close included.
	Exited(w *Worker, err error)
}
