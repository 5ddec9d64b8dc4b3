//go:build !wasip1

package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/testutil"
)

const pkg = "./examples/retrieve"

func TestMain(m *testing.M) {
	os.Exit(testutil.Main(m, "./cmd/rayhost", pkg))
}

// run runs the example's driver on a host with 8 CPUs and returns its output.
func runDriver(t testing.TB) string {
	h := testutil.StartHost(t, func(c *host.Config) { c.NumCPUs, c.Workers = 8, 8 })
	c := client.New(h.Addr())
	mod := testutil.Register(t, c, pkg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := c.Run(ctx, mod, func(l client.LogLine) { out.Write(l.Data) }); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	return out.String()
}

func TestRetrieve(t *testing.T) {
	out := runDriver(t)
	all := "[{0 Learning} {1 Ray} {2 Flexible} {3 Distributed} {4 Python} {5 for} {6 Machine} {7 Learning}]"
	for _, phase := range []string{"sequential", "remote", "put", "wait total"} {
		re := regexp.MustCompile(`(?m)^` + phase + `: runtime [0-9.]+ s, data: (.*)$`)
		m := re.FindStringSubmatch(out)
		if m == nil || m[1] != all {
			t.Errorf("%s: got %v\noutput:\n%s", phase, m, out)
		}
	}
	if n := strings.Count(out, "\nwait: runtime"); n != 4 {
		t.Errorf("want 4 wait batches of 2, got %d; output:\n%s", n, out)
	}
}

// BenchmarkRetrieve records the seed's timings: the ideal is 2.8 s for the
// sequential baseline and 0.7 s for each parallel version.
func BenchmarkRetrieve(b *testing.B) {
	re := regexp.MustCompile(`(?m)^(sequential|remote|put|wait total): runtime ([0-9.]+) s`)
	sums := map[string]float64{}
	for b.Loop() {
		for _, m := range re.FindAllStringSubmatch(runDriver(b), -1) {
			v, _ := strconv.ParseFloat(m[2], 64)
			sums[m[1]] += v
		}
	}
	for phase, sum := range sums {
		b.ReportMetric(sum/float64(b.N), strings.ReplaceAll(phase, " ", "_")+"-s")
	}
}
