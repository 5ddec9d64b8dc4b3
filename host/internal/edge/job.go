package edge

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// Job is one `rayhost run`: a driver task and every task it starts. Their
// output is queued here for the client that watches the run. Its methods
// are safe for concurrent use.
type Job struct {
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

type failure struct {
	obj ids.ObjectID
	msg string
}

// maxJobBacklog bounds the output held for a slow client; beyond it output
// is dropped (and counted) rather than blocking the tasks that print.
const maxJobBacklog = 64 << 20

// NewJob returns an empty job.
func NewJob() *Job { return &Job{notify: make(chan struct{}, 1), ended: make(chan struct{})} }

// Progress is what happened to one of a job's tasks, for its counts.
type Progress int

// What Count counts.
const (
	Submitted Progress = iota
	Finished
	Failed
	Cancelled
)

// Count notes that a task of the job (not its driver) was submitted or
// ended.
func (j *Job) Count(p Progress) {
	switch p {
	case Submitted:
		j.progress.submitted.Add(1)
	case Finished:
		j.progress.finished.Add(1)
	case Failed:
		j.progress.failed.Add(1)
	case Cancelled:
		j.progress.cancelled.Add(1)
	}
}

// ProgressEvent is the job's counts.
func (j *Job) ProgressEvent() *rayhostv1.RunProgress {
	return &rayhostv1.RunProgress{Submitted: j.progress.submitted.Load(), Finished: j.progress.finished.Load(),
		Failed: j.progress.failed.Load(), Cancelled: j.progress.cancelled.Load()}
}

func (j *Job) push(ev *rayhostv1.RunResponse, size int) {
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

// Log queues output a task of the job printed (stream 1 is stdout, 2
// stderr).
func (j *Job) Log(task ids.TaskID, function, hostID string, stream uint8, data []byte) {
	name := "stdout"
	if stream == 2 {
		name = "stderr"
	}
	j.push(&rayhostv1.RunResponse{Event: &rayhostv1.RunResponse_Log{Log: &rayhostv1.LogLine{
		TaskId: task.String(), Function: function, Host: hostID, Stream: name, Data: data,
	}}}, len(data))
}

// Failed remembers the failure of a task of the job whose first return is
// obj, to report it at the end if nobody fetched it (Ray logs "unhandled
// errors" the same way).
func (j *Job) Failed(obj ids.ObjectID, te *abi.TaskError) {
	j.mu.Lock()
	j.failures = append(j.failures, failure{obj: obj, msg: FormatTaskError(te)})
	j.mu.Unlock()
}

// reportUnfetched writes, once, each failure nobody fetched to the run's
// stderr.
func (j *Job) reportUnfetched(fetched func(ids.ObjectID) bool, hostID string) {
	j.mu.Lock()
	fs := j.failures
	j.failures = nil
	j.mu.Unlock()
	for _, f := range fs {
		if fetched(f.obj) {
			continue
		}
		line := []byte("rayhost: unhandled error in a task whose result was never fetched: " + f.msg + "\n")
		j.push(&rayhostv1.RunResponse{Event: &rayhostv1.RunResponse_Log{Log: &rayhostv1.LogLine{
			TaskId: f.obj.Task().String(), Function: "main", Host: hostID, Stream: "stderr", Data: line,
		}}}, len(line))
	}
}

// Finish records the driver's outcome: v is zero on success or its error.
// The failures nobody fetched (fetched tells) are reported first, as
// stderr of hostID. Only the first call counts.
func (j *Job) Finish(v abi.Value, fetched func(ids.ObjectID) bool, hostID string) {
	j.reportUnfetched(fetched, hostID)
	res := &rayhostv1.RunResult{}
	if v.Codec == abi.CodecError {
		te := abi.DecodeTaskError(v.Data)
		res.Error = FormatTaskError(te)
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

// Ended is closed once the driver has ended.
func (j *Job) Ended() <-chan struct{} { return j.ended }

// Next returns queued events, waiting for some, or nothing when tick
// fires first (a nil tick never fires).
func (j *Job) Next(ctx context.Context, tick <-chan time.Time) (evs []*rayhostv1.RunResponse, err error) {
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
