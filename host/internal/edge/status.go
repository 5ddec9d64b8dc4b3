package edge

import (
	"context"
	"slices"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/scheduler"
)

// ResourcesProto is r in the API's units (CPUs, GPUs and custom amounts as
// numbers, not scheduler units).
func ResourcesProto(r scheduler.Resources) *rayhostv1.Resources {
	c := float64(r.CPU) / scheduler.Unit
	out := &rayhostv1.Resources{NumCpus: &c, NumGpus: float64(r.GPU) / scheduler.Unit}
	for _, x := range r.Custom {
		if out.Custom == nil {
			out.Custom = map[string]float64{}
		}
		out.Custom[x.Name] = float64(x.Units) / scheduler.Unit
	}
	return out
}

// Health reports the host's identity, workers and resources.
func (e *Edge) Health(ctx context.Context, req *connect.Request[rayhostv1.HealthRequest]) (*connect.Response[rayhostv1.HealthResponse], error) {
	s := e.h.Status()
	return connect.NewResponse(&rayhostv1.HealthResponse{
		HostId: s.ID, Address: e.h.Addr(), Workers: uint32(s.Workers),
		Total: ResourcesProto(s.Total), Available: ResourcesProto(s.Available),
		WorkerConfinement: s.WorkerConfinement,
	}), nil
}

// ListTasks lists recent task events, of one task or of the tasks whose
// latest state is the one asked for.
func (e *Edge) ListTasks(ctx context.Context, req *connect.Request[rayhostv1.ListTasksRequest]) (*connect.Response[rayhostv1.ListTasksResponse], error) {
	evs, dropped := e.h.TaskEvents()
	want := req.Msg.GetState()
	if states := e.h.TaskStates(); want != "" && !slices.Contains(states, want) {
		return nil, Invalid("state %q: want one of %v", want, states)
	}
	var only *ids.TaskID
	if s := req.Msg.GetTaskId(); s != "" {
		id, err := ids.ParseTaskID(s)
		if err != nil {
			return nil, Invalid("task_id %q: %v", s, err)
		}
		only = &id
	}
	var keep map[ids.TaskID]bool
	if want != "" {
		latest := map[ids.TaskID]string{}
		for _, ev := range evs {
			latest[ev.Task] = ev.State
		}
		keep = map[ids.TaskID]bool{}
		for id, s := range latest {
			keep[id] = s == want
		}
	}
	res := &rayhostv1.ListTasksResponse{Dropped: dropped}
	for _, ev := range evs {
		if keep != nil && !keep[ev.Task] || only != nil && ev.Task != *only {
			continue
		}
		pe := &rayhostv1.TaskEvent{TaskId: ev.Task.String(), Attempt: ev.Attempt + 1, Function: ev.Function, State: ev.State,
			TimeUnixNano: ev.Time.UnixNano(), Host: ev.Host, WorkerPid: int32(ev.Worker), Message: ev.Message, Grants: ev.Grants}
		if !ev.Parent.IsZero() {
			pe.ParentTaskId = ev.Parent.String()
		}
		res.Events = append(res.Events, pe)
	}
	return connect.NewResponse(res), nil
}

// ListActors lists the actors this host owns.
func (e *Edge) ListActors(ctx context.Context, req *connect.Request[rayhostv1.ListActorsRequest]) (*connect.Response[rayhostv1.ListActorsResponse], error) {
	res := &rayhostv1.ListActorsResponse{}
	for _, x := range e.h.Actors() {
		res.Actors = append(res.Actors, &rayhostv1.ActorInfo{ActorId: x.ID, Class: x.Class, Name: x.Name, Namespace: x.Namespace,
			State: x.State, Host: x.Host, Calls: uint64(x.Calls), Restarts: uint32(x.Restarts), Queued: uint32(x.Queued), WorkerPid: int32(x.WorkerPID)})
	}
	return connect.NewResponse(res), nil
}

// ClusterStatus lists the members of the host's cluster.
func (e *Edge) ClusterStatus(ctx context.Context, req *connect.Request[rayhostv1.ClusterStatusRequest]) (*connect.Response[rayhostv1.ClusterStatusResponse], error) {
	members, infeasible := e.h.ClusterStatus()
	return connect.NewResponse(&rayhostv1.ClusterStatusResponse{Members: members, Infeasible: infeasible}), nil
}
