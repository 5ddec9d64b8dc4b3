package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/guest-sdk/ray"
)

// newTable writes aligned columns to w; header is tab-separated.
func newTable(w io.Writer, header string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	return tw
}

// clientCmd builds a command that talks to one host, with the client
// flags and --json; run gets a ready client.
func clientCmd(c *cobra.Command, run func(ctx context.Context, cmd *cobra.Command, a []string, cl *client.Client, asJSON bool) error) *cobra.Command {
	var cf *clientFlags
	var asJSON bool
	c.RunE = func(cmd *cobra.Command, a []string) error {
		cl, base, err := cf.client()
		if err != nil {
			return err
		}
		defer cl.Close()
		return explain(cmd.Context(), run(cmd.Context(), cmd, a, cl, asJSON), cl, base, false)
	}
	cf = bindClientFlags(c.Flags(), "127.0.0.1:6380")
	if c.Name() != "timeline" {
		bindJSON(c, &asJSON)
	}
	return annotateEnv(c)
}

// taskRow is a task as `tasks --json` prints it.
type taskRow struct {
	TaskID, Function, State, Host string
	Attempts                      int
	Submitted                     time.Time
	Ended                         *time.Time `json:",omitempty"`
	DurationSeconds               float64    `json:",omitempty"`
	Reason                        string     `json:",omitempty"`
}

func newTasksCmd() *cobra.Command {
	var state string
	cmd := clientCmd(&cobra.Command{
		Use:   "tasks [flags]",
		Short: "list tasks: id, function, state, host, attempts, duration and why they failed",
		Long: `Tasks lists the tasks a host knows from its task events (the most recent 100,000), oldest
first: each task's latest state, the host of its latest attempt, how many attempts it took
(1 is the first), how long it took, and why it failed, was cancelled or was retried.
'rayhost task ID' shows one task in full.`,
		Example: `  rayhost tasks
  rayhost tasks --state failed
  rayhost tasks --json | jq '.[] | select(.Attempts > 1)'`,
	}, func(ctx context.Context, cmd *cobra.Command, a []string, c *client.Client, asJSON bool) error {
		evs, dropped, err := c.ListTasks(ctx, state)
		if err != nil {
			return err
		}
		if dropped > 0 {
			fmt.Fprintf(cmd.ErrOrStderr(), "rayhost: %d older events were dropped\n", dropped)
		}
		rows := []taskRow{}
		for _, s := range client.Summarize(evs) {
			r := taskRow{TaskID: s.TaskID, Function: s.Function, State: s.State, Host: s.Host, Attempts: s.Attempts,
				Submitted: s.Submitted, Reason: s.Reason}
			if !s.Ended.IsZero() {
				end := s.Ended
				r.Ended, r.DurationSeconds = &end, s.Ended.Sub(s.Submitted).Seconds()
			}
			rows = append(rows, r)
		}
		if asJSON {
			return writeJSON(cmd.OutOrStdout(), rows)
		}
		w := newTable(cmd.OutOrStdout(), "TASK ID\tFUNCTION\tSTATE\tHOST\tATTEMPTS\tDURATION\tREASON")
		for _, r := range rows {
			d := "-"
			if r.Ended != nil {
				d = r.Ended.Sub(r.Submitted).Round(time.Microsecond).String()
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.TaskID, r.Function, r.State, dash(r.Host), r.Attempts, d, dash(firstLine(r.Reason, 80)))
		}
		return w.Flush()
	})
	cmd.Flags().StringVar(&state, "state", "", "only tasks in this state (pending_args, pending_resources, scheduled, running, finished, failed, cancelled)")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// firstLine is s's first line, cut to n characters.
func firstLine(s string, n int) string {
	s, _, cut := strings.Cut(s, "\n")
	if len(s) > n {
		s, cut = s[:n], true
	}
	if cut {
		s += "…"
	}
	return s
}

// taskDetail is one task as `task --json` prints it.
type taskDetail struct {
	TaskID, ParentTaskID, Function, State string
	Grants                                string `json:",omitempty"`
	Attempts                              []attemptRow
	Error                                 *ray.TaskError `json:",omitempty"`
}

type attemptRow struct {
	Attempt          int
	Host             string
	WorkerPID        int `json:",omitempty"`
	Submitted        time.Time
	Started, Ended   *time.Time `json:",omitempty"`
	RunSeconds       float64    `json:",omitempty"`
	Outcome, Message string
}

func newTaskCmd() *cobra.Command {
	return clientCmd(&cobra.Command{
		Use:   "task [flags] <task id>",
		Short: "show one task: its attempts, hosts, timings, grants, error and the guest's stack",
		Long: `Task shows everything a host knows of one task: its function and parent, the directories
and environment it was granted, each attempt (1 is the first) with the host and worker that
ran it, when it was queued, started and ended, and how it ended; and for a failed task its
error: kind, message, the failures of its arguments, and the guest's stack for a panic.
The ID may be shortened to any unique prefix, as 'rayhost tasks' prints it.`,
		Example: `  rayhost task 7d0c4e2a
  rayhost task --json 7d0c4e2a9b1f44c6a3e1d2f0b5a6c7d8 | jq .Error.Stack`,
		Args: args(cobra.ExactArgs(1)),
	}, func(ctx context.Context, cmd *cobra.Command, a []string, c *client.Client, asJSON bool) error {
		id, evs, err := findTask(ctx, c, strings.ToLower(a[0]))
		if err != nil {
			return err
		}
		d := taskDetail{TaskID: id, Function: evs[0].Function, ParentTaskID: evs[0].ParentTaskID}
		var cur *attemptRow
		for _, e := range evs {
			if e.Grants != "" {
				d.Grants = strings.TrimSpace(strings.TrimPrefix(e.Grants, "grants:"))
			}
			if cur == nil || cur.Attempt != e.Attempt {
				d.Attempts = append(d.Attempts, attemptRow{Attempt: e.Attempt, Submitted: e.Time})
				cur = &d.Attempts[len(d.Attempts)-1]
			}
			d.State = e.State
			if e.Host != "" {
				cur.Host = e.Host
			}
			switch e.State {
			case "running":
				t := e.Time
				cur.Started, cur.WorkerPID = &t, e.WorkerPID
			case "finished", "failed", "cancelled", "retried":
				t := e.Time
				cur.Ended, cur.Outcome, cur.Message = &t, e.State, e.Message
				if cur.Started != nil {
					cur.RunSeconds = t.Sub(*cur.Started).Seconds()
				}
			}
		}
		if d.State == "failed" || d.State == "cancelled" {
			d.Error = taskFailure(ctx, c, id)
		}
		if asJSON {
			return writeJSON(cmd.OutOrStdout(), d)
		}
		printTask(cmd.OutOrStdout(), d)
		return nil
	})
}

// findTask returns the events of the task whose ID is id or starts with it.
func findTask(ctx context.Context, c *client.Client, id string) (string, []client.TaskEvent, error) {
	if len(id) < 4 || strings.Trim(id, "0123456789abcdef") != "" {
		return "", nil, usagef("task ID %q: want the hex ID (or a prefix of 4 or more digits) that `rayhost tasks` prints", id)
	}
	if len(id) >= 32 {
		id = id[:32] // an ObjectRef's ID starts with its task's
		evs, err := c.TaskEvents(ctx, id)
		if err != nil {
			return "", nil, err
		}
		if len(evs) == 0 {
			return "", nil, fmt.Errorf("%w: no task %s on this host (its events may have been dropped, or another host owns it)", client.ErrNotFound, id)
		}
		return id, evs, nil
	}
	all, _, err := c.ListTasks(ctx, "")
	if err != nil {
		return "", nil, err
	}
	var match []string
	for _, s := range client.Summarize(all) {
		if strings.HasPrefix(s.TaskID, id) {
			match = append(match, s.TaskID)
		}
	}
	switch len(match) {
	case 0:
		return "", nil, fmt.Errorf("%w: no task whose ID starts with %s on this host", client.ErrNotFound, id)
	case 1:
		return findTask(ctx, c, match[0])
	}
	return "", nil, usagef("%d tasks have IDs that start with %s: give more digits", len(match), id)
}

// taskFailure fetches a failed task's error from its first return object,
// which holds it; nil if that is not to be had.
func taskFailure(ctx context.Context, c *client.Client, taskID string) *ray.TaskError {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := c.GetValues(ctx, []client.ObjectRef{{ID: taskID + "00000001"}})
	var te *ray.TaskError
	if errors.As(err, &te) {
		return te
	}
	return nil
}

func printTask(w io.Writer, d taskDetail) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "task\t%s\n", d.TaskID)
	fmt.Fprintf(tw, "function\t%s\n", d.Function)
	fmt.Fprintf(tw, "parent\t%s\n", dash(d.ParentTaskID))
	fmt.Fprintf(tw, "state\t%s\n", d.State)
	fmt.Fprintf(tw, "grants\t%s\n", dash(strings.TrimSuffix(d.Grants, ";")))
	tw.Flush()
	fmt.Fprintln(w)
	tw = newTable(w, "ATTEMPT\tHOST\tWORKER\tQUEUED\tRAN\tOUTCOME\tMESSAGE")
	for _, at := range d.Attempts {
		worker, ran := "-", "-"
		if at.WorkerPID != 0 {
			worker = fmt.Sprint(at.WorkerPID)
		}
		if at.Started != nil {
			ran = "running"
			if at.Ended != nil {
				ran = at.Ended.Sub(*at.Started).Round(time.Microsecond).String()
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", at.Attempt, dash(at.Host), worker, at.Submitted.Format("15:04:05.000"),
			ran, dash(at.Outcome), dash(firstLine(at.Message, 100)))
	}
	tw.Flush()
	if d.Error != nil {
		fmt.Fprintf(w, "\nerror: %s\n", describeTaskError(d.Error))
	}
}

func newActorsCmd() *cobra.Command {
	return clientCmd(&cobra.Command{
		Use:   "actors [flags]",
		Short: "list actors: id, class, name, state, host, calls, restarts",
		Long: `Actors lists the actors a host knows: their class, name and namespace, state (creating,
alive, restarting or dead), the host that runs them, and how many calls they ran, restarted
after and hold queued.`,
		Example: `  rayhost actors
  rayhost actors --json`,
	}, func(ctx context.Context, cmd *cobra.Command, a []string, c *client.Client, asJSON bool) error {
		actors, err := c.ListActors(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			if actors == nil {
				actors = []client.Actor{}
			}
			return writeJSON(cmd.OutOrStdout(), actors)
		}
		w := newTable(cmd.OutOrStdout(), "ACTOR ID\tCLASS\tNAME\tSTATE\tHOST\tCALLS\tRESTARTS\tQUEUED")
		for _, a := range actors {
			name := a.Name
			if a.Namespace != "" {
				name = a.Namespace + "/" + name
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", a.ID, a.Class, dash(name), a.State, a.Host, a.Calls, a.Restarts, a.Queued)
		}
		return w.Flush()
	})
}

func newTimelineCmd() *cobra.Command {
	return clientCmd(&cobra.Command{
		Use:   "timeline [flags] > trace.json",
		Short: "print task attempts as Chrome-trace JSON (open in Perfetto or chrome://tracing)",
		Long: `Timeline prints one complete event per task attempt that ran, from running to its end, on
a track per host and worker process, as Ray's 'ray timeline' does.`,
		Example: `  rayhost timeline > trace.json   # then open it at ui.perfetto.dev`,
	}, func(ctx context.Context, cmd *cobra.Command, a []string, c *client.Client, _ bool) error {
		evs, _, err := c.ListTasks(ctx, "")
		if err != nil {
			return err
		}
		b, err := client.ChromeTrace(evs)
		if err != nil {
			return err
		}
		_, err = cmd.OutOrStdout().Write(append(b, '\n'))
		return err
	})
}

func newStatusCmd() *cobra.Command {
	return clientCmd(&cobra.Command{
		Use:   "status [flags]",
		Short: "list the cluster's hosts: address, state, total and free resources",
		Long: `Status asks one host for the cluster as it sees it: every member with its API and gossip
addresses, its state (alive, suspect, failed, left) and its total and free resources, then the
infeasible demand: tasks that host owns that no member can run now, which wait for a host that
fits to join (--json lists the members only).`,
		Example: `  rayhost status --address 10.0.0.1:6380
  rayhost status --json`,
	}, func(ctx context.Context, cmd *cobra.Command, a []string, c *client.Client, asJSON bool) error {
		st, err := c.ClusterStatus(ctx)
		if err != nil {
			return err
		}
		members := st.Members
		if asJSON {
			if members == nil {
				members = []client.Member{}
			}
			return writeJSON(cmd.OutOrStdout(), members)
		}
		w := newTable(cmd.OutOrStdout(), "HOST\tADDRESS\tGOSSIP\tSTATE\tTOTAL\tFREE")
		for _, m := range members {
			id := m.HostID
			if m.Self {
				id += " (this)"
			}
			free := "-"
			if m.Available != nil {
				free = formatResources(m.Available)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", id, m.Address, dash(m.GossipAddress), m.State, formatResources(m.Total), free)
		}
		if err := w.Flush(); err != nil {
			return err
		}
		if len(st.Infeasible) > 0 {
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, "\ninfeasible demand (waiting for a host that fits to join; see rayhost tasks --state pending_resources):")
			for _, d := range st.Infeasible {
				fmt.Fprintf(out, "  %d task(s) need %s\n", d.Tasks, formatResources(d.Resources))
			}
		}
		return nil
	})
}

// formatResources prints CPU and GPU first, then custom resources by name,
// leaving out what is zero.
func formatResources(r map[string]float64) string {
	var parts []string
	for _, k := range []string{"CPU", "GPU"} {
		if r[k] != 0 {
			parts = append(parts, fmt.Sprintf("%s=%g", k, r[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(r)) {
		if k != "CPU" && k != "GPU" && r[k] != 0 {
			parts = append(parts, fmt.Sprintf("%s=%g", k, r[k]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}
