package refcount

import (
	"bytes"
	"slices"

	"github.com/rayhost/rayhost/internal/ids"
)

// TaskArg is a task that keeps an object alive as one of its arguments.
type TaskArg struct {
	Task ids.TaskID
	// Lineage: the task has finished and is kept to rebuild its results;
	// else it has not finished yet.
	Lineage bool
}

// TaskArgs returns, for every object a task keeps alive as an argument,
// those tasks, by task ID. It is what Refs.Submitted and Refs.Lineage
// count, by name.
func (c *Counter) TaskArgs() map[ids.ObjectID][]TaskArg {
	out := map[ids.ObjectID][]TaskArg{}
	for id, rec := range c.tasks {
		if rec.ended && !rec.keep {
			continue
		}
		for _, a := range rec.args {
			out[a] = append(out[a], TaskArg{Task: id, Lineage: rec.ended})
		}
	}
	for _, v := range out {
		slices.SortFunc(v, func(a, b TaskArg) int { return bytes.Compare(a.Task[:], b.Task[:]) })
	}
	return out
}
