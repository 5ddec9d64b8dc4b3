package host

import (
	"context"
	"sync"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/internal/abi"
)

// job is one `rayhost run`: a driver task and every task it starts. Their
// output is queued here for the client that watches the run.
type job struct {
	mu      sync.Mutex
	queue   []*rayhostv1.RunResponse
	bytes   int
	dropped int
	done    bool
	notify  chan struct{}
}

// maxJobBacklog bounds the output held for a slow client; beyond it output
// is dropped (and counted) rather than blocking the tasks that print.
const maxJobBacklog = 64 << 20

func newJob() *job { return &job{notify: make(chan struct{}, 1)} }

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

// finish records the driver's outcome: v is zero on success or its error.
func (j *job) finish(v abi.Value) {
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
	j.mu.Unlock()
	j.push(&rayhostv1.RunResponse{Event: &rayhostv1.RunResponse_Result{Result: res}}, 0)
}

// next returns queued events, waiting for some; last is true once the
// result has been returned.
func (j *job) next(ctx context.Context) (evs []*rayhostv1.RunResponse, err error) {
	for {
		j.mu.Lock()
		evs, j.queue, j.bytes = j.queue, nil, 0
		j.mu.Unlock()
		if len(evs) > 0 {
			return evs, nil
		}
		select {
		case <-j.notify:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
