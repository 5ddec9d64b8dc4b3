//go:build !wasip1

// Package examples_test runs every example of the tasks guide on a real
// host process (`rayhost start`, the binary users run: built without
// -race, so that the examples' thousands of tasks do not take minutes under
// the race detector; the host's own tests run it in-process under -race),
// or on a host in this process where the example needs a host in no
// cluster, with worker processes, and checks what it prints.
package examples_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/testutil"
)

var examples = []struct {
	pkg  string
	cpus float64
	gpus float64
	want []string // regular expressions the output must match
	// alone: on a host in no cluster (in this process), where a task no
	// host fits fails as infeasible at once; a `rayhost start` host keeps
	// it waiting for a host that fits to join.
	alone bool
}{
	{"./examples/basic", 2, 0, []string{`ray.Get\(my_function.Remote\(\)\) = 1`, `submitted 4 slow tasks in \S+ without waiting`}, false},
	{"./examples/resources", 4, 2, []string{`with 4 CPUs and 2 GPUs: 1`, `with 3 CPUs: 1`, `with 64 GPUs: .*infeasible`}, true},
	{"./examples/objectref", 2, 0, []string{`ray.Get\(objRef1\) = 1, ray.Get\(objRef2\) = 2`}, false},
	// Timings the examples print are figures, not checked: a loaded machine
	// may take any time.
	{"./examples/wait", 2, 0, []string{`ready: 1 \(the 0.2 s task\) after [0-9.]+ s, remaining: 1`}, false},
	{"./examples/multireturn", 2, 0, []string{`return_single: \[0 1 2\]`, `return_multiple: 0 1 2`}, false},
	{"./examples/generator", 2, 0, []string{`(?s)0 \(after [0-9.]+ s\).*1 \(after [0-9.]+ s\).*2 \(after [0-9.]+ s\).*3 \(after [0-9.]+ s\).*4 \(after [0-9.]+ s\)`}, false},
	{"./examples/cancel", 2, 0, []string{`Object reference was cancelled \(in \S+\)\.`}, false},
	{"./examples/quicksort", 1, 0, []string{`distributed sort of 1000000 ints`, `sorted correctly`}, false},
	{"./examples/quicksort", 2, 0, []string{`distributed sort of 1000000 ints`, `sorted correctly`}, false},
	{"./examples/pi", 2, 0, []string{`(?m)^Progress: 100%$`, `Estimated value of π is: 3\.1[345]`}, false},
	{"./examples/antipatterns", 8, 0, []string{
		`get in a loop vs batch get: +anti-pattern +[0-9.]+ s +fix +[0-9.]+ s`,
		`unnecessary get vs passing the ref: +anti-pattern`,
		`get on task arguments vs direct args: +anti-pattern`,
		`submission order vs completion order: +anti-pattern`,
		`fetching 500 objects at once vs by 100: +anti-pattern`,
		`10,000 tiny tasks vs 10 batches: +anti-pattern`,
	}, false},
}

func TestMain(m *testing.M) {
	pkgs := []string{"./cmd/rayhost"}
	for _, e := range examples {
		pkgs = append(pkgs, e.pkg)
	}
	os.Exit(testutil.Main(m, pkgs...))
}

func TestExamples(t *testing.T) {
	for _, e := range examples {
		t.Run(fmt.Sprintf("%s/cpus=%v", e.pkg, e.cpus), func(t *testing.T) {
			var c *client.Client
			if e.alone {
				h := testutil.StartHost(t, func(c *host.Config) {
					c.NumCPUs, c.NumGPUs, c.Workers = e.cpus, e.gpus, int(e.cpus)
				})
				c = client.New(h.Addr())
			} else {
				c = testutil.StartProcCluster(t, 1, testutil.ProcOptions{Args: []string{"--num-cpus", fmt.Sprint(e.cpus),
					"--num-gpus", fmt.Sprint(e.gpus), "--workers", strconv.Itoa(int(e.cpus)), "--log-level", "warn"}})[0].Client
			}
			mod := testutil.Register(t, c, e.pkg)
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			var out bytes.Buffer
			if err := c.Run(ctx, mod, func(l client.LogLine) { out.Write(l.Data) }); err != nil {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			t.Logf("output:\n%s", out.String())
			for _, w := range e.want {
				if !regexp.MustCompile(w).Match(out.Bytes()) {
					t.Errorf("output does not match %q", w)
				}
			}
			if e.pkg == "./examples/pi" {
				m := regexp.MustCompile(`Estimated value of π is: ([0-9.]+)`).FindSubmatch(out.Bytes())
				if m == nil {
					t.Fatal("no estimate")
				}
				if pi, _ := strconv.ParseFloat(string(m[1]), 64); math.Abs(pi-math.Pi) > 0.01 {
					t.Errorf("estimate %v is not within 0.01 of π", pi)
				}
			}
		})
	}
}
