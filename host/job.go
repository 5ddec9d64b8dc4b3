package host

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// job is one `rayhost run`: a driver task and every task it starts. Their
// output is queued here for the client that watches the run.
type job struct {
	mu      sync.Mutex
	queue   []*rayhostv1.RunResponse
	bytes   int
	dropped int
	done    bool
	ended   chan struct{} // closed once the driver has ended
	notify  chan struct{}
	// failures of the job's tasks, reported at the end unless someone got them
	failures []failure
	// progress counts the job's tasks (not the driver) owned by this host.
	progress struct{ submitted, finished, failed, cancelled atomic.Uint64 }
}

// counted notes that a task of the job was submitted (s is pending_args)
// or ended in s.
func (j *job) counted(t *task, s taskState) {
	if j == nil || t.kind == abi.KindMain {
		return
	}
	switch s {
	case statePendingArgs:
		j.progress.submitted.Add(1)
	case stateFinished:
		j.progress.finished.Add(1)
	case stateFailed:
		j.progress.failed.Add(1)
	case stateCancelled:
		j.progress.cancelled.Add(1)
	}
}

func (j *job) progressEvent() *rayhostv1.RunProgress {
	return &rayhostv1.RunProgress{Submitted: j.progress.submitted.Load(), Finished: j.progress.finished.Load(),
		Failed: j.progress.failed.Load(), Cancelled: j.progress.cancelled.Load()}
}

type failure struct {
	obj ids.ObjectID
	msg string
}

// maxJobBacklog bounds the output held for a slow client; beyond it output
// is dropped (and counted) rather than blocking the tasks that print.
const maxJobBacklog = 64 << 20

func newJob() *job { return &job{notify: make(chan struct{}, 1), ended: make(chan struct{})} }

func (j *job) push(ev *rayhostv1.RunResponse, size int) {
	j.mu.Lock()
	if j.bytes+size > maxJobBacklog && ev.GetResult() == nil {
		j.dropped += size
		j.mu.Unlock()
		return
	}
	j.queue = append(j.queue, ev)
	j.bytes += size
	j.mu.Unlock()
	select {
	case j.notify <- struct{}{}:
	default:
	}
}

func (j *job) log(t *task, hostID string, stream uint8, data []byte) {
	name := "stdout"
	if stream == 2 {
		name = "stderr"
	}
	j.push(&rayhostv1.RunResponse{Event: &rayhostv1.RunResponse_Log{Log: &rayhostv1.LogLine{
		TaskId: t.id.String(), Function: t.displayName(), Host: hostID, Stream: name, Data: data,
	}}}, len(data))
}

// failed remembers a failed task of the job, to report it at the end if
// nobody fetched its result (Ray logs "unhandled errors" the same way).
func (j *job) failed(t *task, te *abi.TaskError) {
	if t.gen != nil || t.numReturns == 0 {
		return
	}
	j.mu.Lock()
	j.failures = append(j.failures, failure{obj: t.id.Return(0), msg: formatTaskError(te)})
	j.mu.Unlock()
}

// reportUnfetched writes, once, each failure nobody fetched to the run's
// stderr.
func (j *job) reportUnfetched(h *Host) {
	j.mu.Lock()
	fs := j.failures
	j.failures = nil
	j.mu.Unlock()
	for _, f := range fs {
		if h.objs.Fetched(f.obj) {
			continue
		}
		line := []byte("rayhost: unhandled error in a task whose result was never fetched: " + f.msg + "\n")
		j.push(&rayhostv1.RunResponse{Event: &rayhostv1.RunResponse_Log{Log: &rayhostv1.LogLine{
			TaskId: f.obj.Task().String(), Function: "main", Host: h.cfg.ID, Stream: "stderr", Data: line,
		}}}, len(line))
	}
}

// finish records the driver's outcome: v is zero on success or its error.
func (j *job) finish(v abi.Value, h *Host) {
	j.reportUnfetched(h)
	res := &rayhostv1.RunResult{}
	if v.Codec == abi.CodecError {
		te := abi.DecodeTaskError(v.Data)
		res.Error = formatTaskError(te)
	}
	j.mu.Lock()
	if j.done {
		j.mu.Unlock()
		return
	}
	j.done = true
	close(j.ended)
	j.mu.Unlock()
	j.push(&rayhostv1.RunResponse{Event: &rayhostv1.RunResponse_Result{Result: res}}, 0)
}

// next returns queued events, waiting for some, or nothing when tick
// fires first (a nil tick never fires).
func (j *job) next(ctx context.Context, tick <-chan time.Time) (evs []*rayhostv1.RunResponse, err error) {
	for {
		j.mu.Lock()
		evs, j.queue, j.bytes = j.queue, nil, 0
		j.mu.Unlock()
		if len(evs) > 0 {
			return evs, nil
		}
		select {
		case <-j.notify:
		case <-tick:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// driverGate admits drivers: at most MaxDrivers at once on the host, and at
// most MaxDriversPerClient from one client (its IP address: the API token
// is shared, so the address is what tells clients apart). The others wait,
// in no particular order, until a driver ends or their caller gives up.
type driverGate struct {
	mu      sync.Mutex
	running int
	byPeer  map[string]int
	wake    chan struct{} // closed and replaced when a driver ends
}

// acquire waits for a slot for a driver of client and returns the function
// that frees it.
func (g *driverGate) acquire(ctx context.Context, h *Host, client string) (release func(), err error) {
	maxAll, maxPeer := h.cfg.MaxDrivers, h.cfg.MaxDriversPerClient
	logged := false
	for {
		g.mu.Lock()
		if g.byPeer == nil {
			g.byPeer, g.wake = map[string]int{}, make(chan struct{})
		}
		if g.running < maxAll && g.byPeer[client] < maxPeer {
			g.running++
			g.byPeer[client]++
			g.mu.Unlock()
			var once sync.Once
			return func() { once.Do(func() { g.release(client) }) }, nil
		}
		wake := g.wake
		g.mu.Unlock()
		if !logged {
			logged = true
			h.log.Info("a driver waits for a slot", "client", client, "max_drivers", maxAll, "max_drivers_per_client", maxPeer)
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a driver slot (at most %d drivers run at once, %d per client; rayhost start --max-drivers, --max-drivers-per-client): %w", maxAll, maxPeer, ctx.Err())
		case <-h.done:
			return nil, ErrClosed
		}
	}
}

func (g *driverGate) release(client string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.running--
	if g.byPeer[client]--; g.byPeer[client] <= 0 {
		delete(g.byPeer, client)
	}
	close(g.wake)
	g.wake = make(chan struct{})
}

// clientOf is the client part of a peer address: its IP.
func clientOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}
