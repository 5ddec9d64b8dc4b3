package objdir

import (
	"errors"

	"github.com/rayhost/rayhost/internal/kinds"
)

// Sentinel errors of the object directory. Package host exports the same
// values under its own names (host.ErrObjectNotFound is ErrNotFound, and so
// on), so errors.Is matches across both.
var (
	// ErrNotFound: the directory knows no object with that ID, here or in
	// the store (or a peer says it holds no copy).
	ErrNotFound = kinds.Classed(kinds.ErrNotFound, "host: object not found")
	// ErrLost: every copy of an object is gone with the hosts that held it,
	// and it cannot be rebuilt.
	ErrLost = kinds.Classed(kinds.ErrObjectLost, "host: object lost")
	// ErrFreed: the object was freed (nothing referenced it any more);
	// whoever reads it holds a released, stale or forged ref.
	ErrFreed = kinds.Classed(kinds.ErrNotFound, "host: object freed")
	// ErrOwnerDied: the host that owns an object left or failed, so nobody
	// can say what it is any more.
	ErrOwnerDied = kinds.Classed(kinds.ErrOwnerDied, "host: owner died")
	// ErrTimeout: objects were not ready before a wait's timeout.
	ErrTimeout = kinds.Classed(kinds.ErrGetTimeout, "host: get timed out")
	// ErrCancelled: a wait ended because its cancel channel closed (the
	// waiting task was cancelled).
	ErrCancelled = errors.New("objdir: waiting task cancelled")
	// ErrUnreachable: a Peers implementation returns an error wrapping it
	// when the host asked is no member of the cluster or is gone; the
	// directory then gives up on that host rather than retry.
	ErrUnreachable = errors.New("objdir: host unreachable")
	// ErrStalled: a host a pull was reading from sent nothing for
	// Config.PullIdle; the pull was given up (another holder is tried).
	ErrStalled = errors.New("objdir: pull stalled")
	// ErrClosed: the directory was closed; nothing more reaches its store.
	ErrClosed = errors.New("objdir: closed")
	// ErrInvalidConfig: New was given a Config it cannot work with.
	ErrInvalidConfig = errors.New("objdir: invalid config")
)
