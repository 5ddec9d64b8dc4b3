package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rayhost/rayhost/client"
)

func cmdTasks(args []string) error {
	fs := flag.NewFlagSet("tasks", flag.ContinueOnError)
	cf := bindClientFlags(fs)
	state := fs.String("state", "", "only tasks in this state (pending_args, pending_resources, scheduled, running, finished, failed, cancelled)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	evs, dropped, err := c.ListTasks(context.Background(), *state)
	if err != nil {
		return err
	}
	w := newTable("TASK ID\tFUNCTION\tSTATE\tHOST\tATTEMPTS\tDURATION")
	for _, s := range client.Summarize(evs) {
		d := "-"
		if !s.Ended.IsZero() {
			d = s.Ended.Sub(s.Submitted).Round(time.Microsecond).String()
		}
		host := s.Host
		if host == "" {
			host = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", s.TaskID, s.Function, s.State, host, s.Attempts, d)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if dropped > 0 {
		fmt.Fprintf(os.Stderr, "rayhost: %d older events were dropped\n", dropped)
	}
	return nil
}

func cmdTimeline(args []string) error {
	c, err := clientOnly("timeline", args)
	if err != nil {
		return err
	}
	evs, _, err := c.ListTasks(context.Background(), "")
	if err != nil {
		return err
	}
	b, err := client.ChromeTrace(evs)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(b, '\n'))
	return err
}

func cmdActors(args []string) error {
	c, err := clientOnly("actors", args)
	if err != nil {
		return err
	}
	actors, err := c.ListActors(context.Background())
	if err != nil {
		return err
	}
	w := newTable("ACTOR ID\tCLASS\tNAME\tSTATE\tHOST\tCALLS\tRESTARTS\tQUEUED")
	for _, a := range actors {
		name := a.Name
		if a.Namespace != "" {
			name = a.Namespace + "/" + name
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", a.ID, a.Class, name, a.State, a.Host, a.Calls, a.Restarts, a.Queued)
	}
	return w.Flush()
}

func cmdStatus(args []string) error {
	c, err := clientOnly("status", args)
	if err != nil {
		return err
	}
	members, err := c.Members(context.Background())
	if err != nil {
		return err
	}
	w := newTable("HOST\tADDRESS\tGOSSIP\tSTATE\tTOTAL\tFREE")
	for _, m := range members {
		id := m.HostID
		if m.Self {
			id += " (this)"
		}
		free := "-"
		if m.Available != nil {
			free = formatResources(m.Available)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", id, m.Address, m.GossipAddress, m.State, formatResources(m.Total), free)
	}
	return w.Flush()
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
