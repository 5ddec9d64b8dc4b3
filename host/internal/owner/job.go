package owner

import (
	"github.com/rayhost/rayhost/host/internal/edge"
	"github.com/rayhost/rayhost/internal/abi"
)

// job is one `rayhost run`: a driver task and every task it starts. Their
// output is queued in the edge's Job for the client that watches the run;
// these methods tell it about the job's tasks.
type job struct{ j *edge.Job }

// counted notes that a task of the job was submitted (s is pending_args)
// or ended in s.
func (j *job) counted(t *task, s taskState) {
	if j == nil || t.kind == abi.KindMain {
		return
	}
	switch s {
	case statePendingArgs:
		j.j.Count(edge.Submitted)
	case stateFinished:
		j.j.Count(edge.Finished)
	case stateFailed:
		j.j.Count(edge.Failed)
	case stateCancelled:
		j.j.Count(edge.Cancelled)
	}
}

func (j *job) log(t *task, hostID string, stream uint8, data []byte) {
	j.j.Log(t.id, t.displayName(), hostID, stream, data)
}

// failed remembers a failed task of the job, to report it at the end if
// nobody fetched its result (Ray logs "unhandled errors" the same way).
func (j *job) failed(t *task, te *abi.TaskError) {
	if t.gen != nil || t.numReturns == 0 {
		return
	}
	j.j.Failed(t.id.Return(0), te)
}

// finish records the driver's outcome: v is zero on success or its error.
func (j *job) finish(v abi.Value, h *Owner) { j.j.Finish(v, h.objs.Fetched, h.cfg.ID) }
