package main

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/internal/testutil"
)

// updateDocs rewrites the examples in docs/ that tests produce:
//
//	go test ./cmd/rayhost -run TestCLIMemory -update-docs
var updateDocs = flag.Bool("update-docs", false, "rewrite the examples in docs/ from this run's output")

// memoryDoc is the page whose example TestCLIMemory produces, between
// these markers.
const (
	memoryDoc      = "docs/MEMORY.md"
	memoryDocBegin = "<!-- begin memory-example: written by TestCLIMemory (go test ./cmd/rayhost -run TestCLIMemory -update-docs) -->\n"
	memoryDocEnd   = "<!-- end memory-example -->\n"
)

// TestCLIMemory: `rayhost memory` lists what a workload keeps alive on a
// real host — a client's put, a value containing a ref, an argument of a
// running task, a ref a running task got inside its argument — with sizes,
// places and reasons, and a summary line; --json says the same; --limit
// bounds the listing. Its output is the example of docs/MEMORY.md.
func TestCLIMemory(t *testing.T) {
	addr := startProcess(t, "--num-cpus", "2", "--id", "host-a")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	c := client.New(addr)
	if _, err := c.RegisterModule(ctx, testutil.Guest(t, guestPkg), "guest"); err != nil {
		t.Fatal(err)
	}
	must := func(ref client.ObjectRef, err error) client.ObjectRef {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return ref
	}
	big := must(c.Put(ctx, make([]byte, 200<<10)))         // in the store
	box := must(c.Submit(ctx, "guest", "put_bytes", 1000)) // its value contains its put's ref
	var put client.ObjectRef
	if err := c.Get(ctx, box, &put); err != nil {
		t.Fatal(err)
	}
	ms := must(c.Put(ctx, 600_000))                                                 // an argument of a task that runs
	slept := must(c.Submit(ctx, "guest", "sleep", ms))                              // runs ten minutes
	getter := must(c.Submit(ctx, "guest", "get_nested", []client.ObjectRef{slept})) // waits for it
	defer func() { _ = c.Cancel(context.WithoutCancel(ctx), slept, true, true) }()
	getterTask := getter.ID[:32]

	// Wait until the workload has settled: put_bytes's attempt has let go
	// of its put, get_nested runs and holds the ref it was given.
	byID := map[string]client.MemoryObject{}
	for {
		m, err := c.Memory(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		clear(byID)
		for _, o := range m.Objects {
			byID[o.ID] = o
		}
		if len(byID[put.ID].References) == 1 && slices.ContainsFunc(byID[slept.ID].References, func(r client.ObjectReference) bool {
			return r.Kind == "local_ref" && strings.HasPrefix(r.By, "task:"+getterTask)
		}) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the workload did not settle: %+v", m)
		}
		time.Sleep(20 * time.Millisecond)
	}

	code, out, errOut := runCLI(t, "memory", "--address", addr)
	if code != 0 {
		t.Fatalf("rayhost memory exited %d: %s", code, errOut)
	}
	t.Logf("rayhost memory:\n%s", out)
	short := func(id string) string { // as the table cuts IDs: 12 digits, and an object's index
		if len(id) == 40 {
			return id[:12] + "…" + id[32:]
		}
		return id[:12] + "…"
	}
	for _, want := range []struct {
		id    string
		parts []string
	}{
		{big.ID, []string{"200.0 KiB", "ready", "store", "local_ref api"}},
		{put.ID, []string{"1000 B", "ready", "memory", "in_object " + short(box.ID)}},
		{box.ID, []string{"ready", "memory", "local_ref api"}},
		{ms.ID, []string{"6 B", "ready", "memory", "local_ref api, task_arg " + short(slept.ID[:32])}},
		{slept.ID, []string{"pending", "local_ref api, local_ref task:" + short(getterTask) + "/1, task_arg " + short(getterTask)}},
		{getter.ID, []string{"pending", "local_ref api"}},
	} {
		line := lineOf(out, want.id)
		for _, p := range want.parts {
			if !strings.Contains(line, p) {
				t.Errorf("the line of %s lacks %q:\n%s", want.id, p, line)
			}
		}
	}
	if !regexp.MustCompile(`(?m)^summary: 6 objects, .* \(0 borrowed\); .* in memory; \d+ freed so far; kept by local_ref 5, task_arg 2, in_object 1; 6 listed$`).MatchString(out) {
		t.Errorf("no summary line as expected:\n%s", out)
	}
	if !strings.HasPrefix(out, "host host-a at "+addr+"\n") {
		t.Errorf("the output does not start with the host:\n%s", out)
	}

	t.Run("json", func(t *testing.T) {
		code, out, errOut := runCLI(t, "memory", "--address", addr, "--json", "--limit", "2")
		var hosts []hostMemory
		if err := json.Unmarshal([]byte(out), &hosts); code != 0 || err != nil {
			t.Fatalf("memory --json exited %d (%v): %s%s", code, err, out, errOut)
		}
		if len(hosts) != 1 || hosts[0].HostID != "host-a" || len(hosts[0].Objects) != 2 || hosts[0].Summary.Objects != 6 ||
			hosts[0].Objects[0].ID != big.ID || hosts[0].Objects[0].References[0] != (client.ObjectReference{Kind: "local_ref", By: "api", Count: 1}) {
			t.Fatalf("memory --json --limit 2: %s", out)
		}
	})
	t.Run("usage", func(t *testing.T) {
		if code, _, errOut := runCLI(t, "memory", "--address", addr, "--limit", "0"); code != 2 {
			t.Fatalf("--limit 0 exited %d: %s", code, errOut)
		}
	})

	example := strings.ReplaceAll(out, addr, "127.0.0.1:6380")
	checkDocExample(t, memoryDoc, memoryDocBegin, memoryDocEnd, "$ rayhost memory\n"+example)
}

// TestCLIMemoryCluster: `rayhost memory` asks every member of the
// cluster, each for its own objects, and adds them up; --this-host asks
// one.
func TestCLIMemoryCluster(t *testing.T) {
	hosts := testutil.StartProcCluster(t, 2, testutil.ProcOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var puts []string
	for i, h := range hosts {
		ref, err := h.Client.Put(ctx, make([]byte, 100*(i+1)))
		if err != nil {
			t.Fatal(err)
		}
		puts = append(puts, ref.ID)
	}
	code, out, errOut := runCLI(t, "memory", "--address", hosts[0].Addr)
	if code != 0 {
		t.Fatalf("rayhost memory exited %d: %s", code, errOut)
	}
	a, b, ok := strings.Cut(out, "\nhost ")
	if !ok || !strings.HasPrefix(a, "host host-a at "+hosts[0].Addr) || !strings.HasPrefix(b, "host-b at "+hosts[1].Addr) {
		t.Fatalf("want host-a's table, then host-b's:\n%s", out)
	}
	if !strings.Contains(lineOf(a, puts[0]), "100 B") || lineOf(a, puts[1]) != "" || !strings.Contains(lineOf(b, puts[1]), "200 B") {
		t.Fatalf("each host lists its own put:\n%s", out)
	}
	if !strings.Contains(out, "\ncluster (2 hosts): 2 objects, 300 B (0 borrowed);") {
		t.Fatalf("no cluster line adding the hosts up:\n%s", out)
	}
	code, out, _ = runCLI(t, "memory", "--address", hosts[1].Addr, "--this-host", "--json")
	var one []hostMemory
	if err := json.Unmarshal([]byte(out), &one); code != 0 || err != nil || len(one) != 1 || one[0].HostID != "host-b" || len(one[0].Objects) != 1 {
		t.Fatalf("memory --this-host --json exited %d (%v): %s", code, err, out)
	}
}

// lineOf is the line of out that starts with id.
func lineOf(out, id string) string {
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, id) {
			return line
		}
	}
	return ""
}

// checkDocExample compares the block between begin and end in the doc
// with got, modulo what changes from run to run (IDs, sizes, alignment,
// the order of equal rows); with -update-docs it writes got there.
func checkDocExample(t *testing.T, doc, begin, end, got string) {
	t.Helper()
	path := filepath.Join(testutil.RepoRoot(), doc)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i, j := strings.Index(text, begin), strings.Index(text, end)
	if i < 0 || j < i {
		t.Fatalf("%s has no example block (%q … %q)", doc, strings.TrimSpace(begin), strings.TrimSpace(end))
	}
	block := "```text\n" + got + "```\n"
	if *updateDocs {
		text = text[:i+len(begin)] + block + text[j:]
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if have := text[i+len(begin) : j]; normalizeExample(have) != normalizeExample(block) {
		t.Errorf("the example in %s is stale: run go test ./cmd/rayhost -run %s -update-docs\nhave:\n%s\nthis run:\n%s", doc, t.Name(), have, block)
	}
}

var (
	exampleIDs   = regexp.MustCompile(`[0-9a-f]{12,}(…[0-9a-f]{8}|…)?`)
	exampleSizes = regexp.MustCompile(`\d+(\.\d+)? (B|KiB|MiB|GiB)\b`)
	exampleSpace = regexp.MustCompile(`[ \t]+`)
)

// normalizeExample drops what differs between runs of the same workload:
// IDs, sizes, the table's alignment and the order of its rows.
func normalizeExample(s string) string {
	s = exampleIDs.ReplaceAllString(s, "ID")
	s = exampleSizes.ReplaceAllString(s, "SIZE")
	s = exampleSpace.ReplaceAllString(s, " ")
	lines := strings.Split(strings.TrimSpace(s), "\n")
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
