package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/rayhost/rayhost/client"
)

// hostMemory is one host's answer to `memory --json`: its objects and
// summary, or why it was not asked or did not answer.
type hostMemory struct {
	HostID, Address string
	// State is the member's state when it was not asked (not alive).
	State   string                `json:",omitempty"`
	Error   string                `json:",omitempty"`
	Objects []client.MemoryObject `json:",omitempty"`
	Summary *client.MemorySummary `json:",omitempty"`
}

func newMemoryCmd() *cobra.Command {
	var cf *clientFlags
	var asJSON, thisHost bool
	var limit int
	c := &cobra.Command{
		Use:   "memory [flags]",
		Short: "list the objects each host keeps alive: size, state, place and why (as ray memory)",
		Long: `Memory asks every host of the cluster (or only the one --address names, with --this-host)
which objects it counts references to, and lists them largest first: each object's size, its
state (pending, ready, failed, missing), where its bytes are (memory, store, or other hosts),
its owner when another host owns it, and every reference that keeps it alive — local_ref
(a holder has the ref: session:PRINCIPAL#N, anon:PRINCIPAL, task:ID/ATTEMPT, actor:ID),
task_arg (an unfinished task takes it), lineage (a finished task kept to rebuild its results
takes it), in_object (another object's value contains it), borrowed (another host reads it), pinned (an object
nobody counts contains it). A summary line per host counts every object, listed or not:
their number and size, what the host holds in memory, how many were freed, and how many
objects each kind of reference keeps. IDs in the references column are cut to their first 12
digits (and an object's index); --json has them in full. See docs/MEMORY.md.`,
		Example: `  rayhost memory
  rayhost memory --limit 20 --this-host
  rayhost memory --json | jq '.[].Objects[] | select(.State == "pending")'`,
	}
	c.RunE = func(cmd *cobra.Command, a []string) error {
		if limit < 1 {
			return usagef("--limit %d: list at least 1 object (the summary counts them all)", limit)
		}
		cl, base, err := cf.client()
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		hosts, err := gatherMemory(ctx, cf, cl, limit, thisHost)
		if err != nil {
			return explain(ctx, err, cl, base, false)
		}
		if asJSON {
			return writeJSON(cmd.OutOrStdout(), hosts)
		}
		return printMemory(cmd.OutOrStdout(), hosts)
	}
	cf = bindClientFlags(c.Flags(), "127.0.0.1:6380")
	bindJSON(c, &asJSON)
	c.Flags().IntVar(&limit, "limit", 1000, "most objects to list per host, largest first")
	c.Flags().BoolVar(&thisHost, "this-host", false, "ask only the host --address names, not every member of its cluster")
	return annotateEnv(c)
}

// gatherMemory asks the host cl talks to, then (unless thisHost) every
// other alive member of its cluster. The first host's error is returned;
// the others' are recorded with them.
func gatherMemory(ctx context.Context, cf *clientFlags, cl *client.Client, limit int, thisHost bool) ([]hostMemory, error) {
	first, err := cl.Memory(ctx, limit)
	if err != nil {
		return nil, err
	}
	out := []hostMemory{memoryOf(first)}
	if thisHost {
		return out, nil
	}
	st, err := cl.ClusterStatus(ctx)
	if err != nil {
		return nil, err
	}
	out = slices.Grow(out, len(st.Members)) // no appends move what the goroutines fill in
	var wg sync.WaitGroup
	for _, m := range st.Members {
		if m.Self || m.Address == first.Address {
			continue
		}
		out = append(out, hostMemory{HostID: m.HostID, Address: m.Address})
		hm := &out[len(out)-1]
		if m.State != "alive" {
			hm.State = m.State
			continue
		}
		wg.Go(func() {
			other, _, err := cf.clientOf(m.Address)
			var got *client.Memory
			if err == nil {
				got, err = other.Memory(ctx, limit)
			}
			if err != nil {
				hm.Error = err.Error()
				return
			}
			*hm = memoryOf(got)
		})
	}
	wg.Wait()
	return out, nil
}

func memoryOf(m *client.Memory) hostMemory {
	return hostMemory{HostID: m.HostID, Address: m.Address, Objects: m.Objects, Summary: &m.Summary}
}

// printMemory prints a table and a summary line per host, and a total
// line for a cluster.
func printMemory(w io.Writer, hosts []hostMemory) error {
	var total client.MemorySummary
	answered := 0
	for i, h := range hosts {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "host %s at %s\n", h.HostID, h.Address)
		switch {
		case h.State != "":
			fmt.Fprintf(w, "  not asked: the host is %s\n", h.State)
			continue
		case h.Error != "":
			fmt.Fprintf(w, "  no answer: %s\n", h.Error)
			continue
		}
		tw := newTable(w, "OBJECT ID\tSIZE\tSTATE\tWHERE\tOWNER\tREFERENCES")
		for _, o := range h.Objects {
			where := o.Where
			if where == "hosts" {
				where = strings.Join(o.Holders, ",")
			}
			size := "-"
			if o.State != "pending" {
				size = formatBytes(o.Size)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.ID, size, o.State, dash(where), dash(o.Owner), formatReferences(o.References))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w, summaryLine(*h.Summary))
		answered++
		addSummary(&total, *h.Summary)
	}
	if answered > 1 {
		fmt.Fprintf(w, "\ncluster (%d hosts): %s\n", answered, strings.TrimPrefix(summaryLine(total), "summary: "))
	}
	return nil
}

func addSummary(to *client.MemorySummary, s client.MemorySummary) {
	to.Objects += s.Objects
	to.Borrowed += s.Borrowed
	to.Listed += s.Listed
	to.Bytes += s.Bytes
	to.MemoryBytes += s.MemoryBytes
	to.Unpersisted += s.Unpersisted
	to.Freed += s.Freed
	if to.ByKind == nil {
		to.ByKind = map[string]int{}
	}
	for k, n := range s.ByKind {
		to.ByKind[k] += n
	}
}

// referenceKinds is the order kinds are shown in: the usual ones first.
var referenceKinds = []string{"local_ref", "task_arg", "lineage", "in_object", "borrowed", "pinned"}

// summaryLine is a host's totals on one line.
func summaryLine(s client.MemorySummary) string {
	var kinds []string
	for _, k := range referenceKinds {
		if s.ByKind[k] > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, s.ByKind[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.ByKind)) {
		if !slices.Contains(referenceKinds, k) && s.ByKind[k] > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, s.ByKind[k]))
		}
	}
	if len(kinds) == 0 {
		kinds = []string{"none"}
	}
	return fmt.Sprintf("summary: %d objects, %s (%d borrowed); %s in memory; %d freed so far; kept by %s; %d listed",
		s.Objects, formatBytes(s.Bytes), s.Borrowed, formatBytes(s.MemoryBytes), s.Freed, strings.Join(kinds, ", "), s.Listed)
}

// longHex is a task or object ID inside a reference.
var longHex = regexp.MustCompile(`[0-9a-f]{32,}`)

// shortID cuts a task ID to its first 12 digits, and an object ID to
// those and its index (the last 8: which return or put of its task).
func shortID(id string) string {
	if len(id) == 40 {
		return id[:12] + "…" + id[32:]
	}
	return id[:12] + "…"
}

// formatReferences lists an object's references, IDs cut to 12 digits.
func formatReferences(refs []client.ObjectReference) string {
	if len(refs) == 0 {
		return "-"
	}
	parts := make([]string, len(refs))
	for i, r := range refs {
		p := r.Kind
		if r.By != "" {
			p += " " + longHex.ReplaceAllStringFunc(r.By, shortID)
		}
		if r.Count > 1 {
			p += fmt.Sprintf(" ×%d", r.Count)
		}
		parts[i] = p
	}
	return strings.Join(parts, ", ")
}

// formatBytes prints n in B, KiB, MiB or GiB.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, u := float64(n)/unit, 0
	for v >= unit && u < 2 {
		v, u = v/unit, u+1
	}
	return fmt.Sprintf("%.1f %s", v, []string{"KiB", "MiB", "GiB"}[u])
}
