package client

import (
	"context"
	"encoding/json"
	"sort"
	"time"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
)

// TaskEvent is one state transition of one attempt of a task.
type TaskEvent struct {
	TaskID, ParentTaskID string
	Attempt              int
	Function, State      string
	Time                 time.Time
	Host                 string
	WorkerPID            int
	Message              string
	// Grants describes what the task was granted; "" for nothing.
	Grants string
}

// ListTasks returns a host's task events, oldest first; state (if not "")
// keeps the tasks whose latest state it is. dropped counts events the host
// no longer keeps.
func (c *Client) ListTasks(ctx context.Context, state string) (events []TaskEvent, dropped uint64, err error) {
	return c.listTasks(ctx, &rayhostv1.ListTasksRequest{State: state})
}

// TaskEvents returns the events of one task, oldest first.
func (c *Client) TaskEvents(ctx context.Context, taskID string) ([]TaskEvent, error) {
	evs, _, err := c.listTasks(ctx, &rayhostv1.ListTasksRequest{TaskId: taskID})
	return evs, err
}

func (c *Client) listTasks(ctx context.Context, req *rayhostv1.ListTasksRequest) (events []TaskEvent, dropped uint64, err error) {
	res, err := c.svc.ListTasks(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, 0, fromConnect(err)
	}
	for _, e := range res.Msg.GetEvents() {
		events = append(events, TaskEvent{
			TaskID: e.GetTaskId(), ParentTaskID: e.GetParentTaskId(), Attempt: int(e.GetAttempt()),
			Function: e.GetFunction(), State: e.GetState(), Time: time.Unix(0, e.GetTimeUnixNano()),
			Host: e.GetHost(), WorkerPID: int(e.GetWorkerPid()), Message: e.GetMessage(), Grants: e.GetGrants(),
		})
	}
	return events, res.Msg.GetDropped(), nil
}

// TaskSummary is a task's latest state, from its events.
type TaskSummary struct {
	TaskID, Function, State string
	// Host ran (or runs) its latest attempt; "" before it was scheduled.
	Host             string
	Attempts         int
	Submitted, Ended time.Time // Ended is zero while the task runs
	// Reason says why the task failed, was cancelled or was last retried.
	Reason string
}

// Summarize folds events into one summary per task, in submission order.
func Summarize(events []TaskEvent) []TaskSummary {
	byID := map[string]*TaskSummary{}
	var order []string
	for _, e := range events {
		s := byID[e.TaskID]
		if s == nil {
			s = &TaskSummary{TaskID: e.TaskID, Function: e.Function, Submitted: e.Time}
			byID[e.TaskID] = s
			order = append(order, e.TaskID)
		}
		s.State = e.State
		s.Attempts = max(s.Attempts, e.Attempt)
		if e.State == "scheduled" || e.State == "running" {
			s.Host = e.Host
		}
		switch e.State {
		case "finished", "failed", "cancelled":
			s.Ended = e.Time
		}
		switch e.State {
		case "failed", "cancelled", "retried":
			s.Reason = e.Message
		case "finished":
			s.Reason = ""
		}
	}
	out := make([]TaskSummary, len(order))
	for i, id := range order {
		out[i] = *byID[id]
	}
	return out
}

// traceEvent is one record of Chrome's trace event format (Perfetto and
// chrome://tracing read it).
type traceEvent struct {
	Name string         `json:"name"`
	Cat  string         `json:"cat,omitempty"`
	Ph   string         `json:"ph"`
	Ts   float64        `json:"ts"` // µs
	Dur  float64        `json:"dur,omitempty"`
	Pid  string         `json:"pid"`
	Tid  int            `json:"tid"`
	Args map[string]any `json:"args,omitempty"`
}

// ChromeTrace turns task events into Chrome-trace JSON, like `ray
// timeline`: one complete event ("ph": "X") per task attempt that ran,
// from running to its end, on a track per host (process) and worker
// (thread).
func ChromeTrace(events []TaskEvent) ([]byte, error) {
	type key struct {
		id      string
		attempt int
	}
	started := map[key]TaskEvent{}
	var out []traceEvent
	hosts := map[string]bool{}
	workers := map[[2]any]bool{}
	for _, e := range events {
		k := key{e.TaskID, e.Attempt}
		switch e.State {
		case "running":
			started[k] = e
		case "finished", "failed", "cancelled", "retried":
			s, ok := started[k]
			if !ok {
				continue // it never ran (cancelled in the queue, say)
			}
			delete(started, k)
			out = append(out, traceEvent{
				Name: s.Function, Cat: "task", Ph: "X",
				Ts: float64(s.Time.UnixNano()) / 1e3, Dur: float64(e.Time.Sub(s.Time).Nanoseconds()) / 1e3,
				Pid: s.Host, Tid: s.WorkerPID,
				Args: map[string]any{"task_id": e.TaskID, "attempt_number": e.Attempt, "func_or_class_name": s.Function, "state": e.State},
			})
			hosts[s.Host] = true
			workers[[2]any{s.Host, s.WorkerPID}] = true
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ts < out[j].Ts })
	for h := range hosts {
		out = append(out, traceEvent{Name: "process_name", Ph: "M", Pid: h, Args: map[string]any{"name": "Node " + h}})
	}
	for w := range workers {
		out = append(out, traceEvent{Name: "thread_name", Ph: "M", Pid: w[0].(string), Tid: w[1].(int),
			Args: map[string]any{"name": "worker " + itoa(w[1].(int))}})
	}
	if out == nil {
		out = []traceEvent{}
	}
	return json.Marshal(out)
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// Actor describes an actor a host owns.
type Actor struct {
	ID, Class, Name, Namespace, State, Host string
	Calls                                   uint64
	Restarts, Queued                        int
	WorkerPID                               int
}

// ListActors returns the actors a host owns.
func (c *Client) ListActors(ctx context.Context) ([]Actor, error) {
	res, err := c.svc.ListActors(ctx, connect.NewRequest(&rayhostv1.ListActorsRequest{}))
	if err != nil {
		return nil, fromConnect(err)
	}
	var out []Actor
	for _, a := range res.Msg.GetActors() {
		out = append(out, Actor{ID: a.GetActorId(), Class: a.GetClass(), Name: a.GetName(), Namespace: a.GetNamespace(),
			State: a.GetState(), Host: a.GetHost(), Calls: a.GetCalls(), Restarts: int(a.GetRestarts()),
			Queued: int(a.GetQueued()), WorkerPID: int(a.GetWorkerPid())})
	}
	return out, nil
}

// Member is one host of a cluster.
type Member struct {
	HostID, Address, GossipAddress string
	// State is alive, leaving, left or failed, or unverified: alive in
	// gossip but not yet proven to hold the cluster secret (it gets no work).
	State string
	// Total and Available resources ("CPU", "GPU" and custom names);
	// Available is nil until the answering host has a load report.
	Total, Available map[string]float64
	// Self marks the host that answered.
	Self bool
}

// Members lists the cluster's hosts as the host c talks to sees them.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	s, err := c.ClusterStatus(ctx)
	return s.Members, err
}

// Demand is a number of waiting tasks that need the same resources.
type Demand struct {
	Resources map[string]float64
	Tasks     int
}

// ClusterStatus is the cluster as one host sees it.
type ClusterStatus struct {
	Members []Member
	// Infeasible is the demand no member can run now: tasks the host owns
	// that wait for a host that fits to join, by resource shape.
	Infeasible []Demand
}

// ClusterStatus asks the host c talks to for its members and the tasks it
// owns that no member can run now.
func (c *Client) ClusterStatus(ctx context.Context) (ClusterStatus, error) {
	res, err := c.svc.ClusterStatus(ctx, connect.NewRequest(&rayhostv1.ClusterStatusRequest{}))
	if err != nil {
		return ClusterStatus{}, fromConnect(err)
	}
	var out ClusterStatus
	for _, m := range res.Msg.GetMembers() {
		out.Members = append(out.Members, Member{HostID: m.GetHostId(), Address: m.GetAddress(), GossipAddress: m.GetGossipAddress(),
			State: m.GetState(), Total: resourceMap(m.GetTotal()), Available: resourceMap(m.GetAvailable()), Self: m.GetSelf()})
	}
	for _, d := range res.Msg.GetInfeasible() {
		out.Infeasible = append(out.Infeasible, Demand{Resources: resourceMap(d.GetResources()), Tasks: int(d.GetTasks())})
	}
	return out, nil
}

func resourceMap(r *rayhostv1.Resources) map[string]float64 {
	if r == nil {
		return nil
	}
	out := map[string]float64{"CPU": r.GetNumCpus(), "GPU": r.GetNumGpus()}
	for k, v := range r.GetCustom() {
		out[k] = v
	}
	return out
}
