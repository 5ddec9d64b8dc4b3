//go:build linux

package host_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/host"
)

// workerPIDs lists the processes that are children of this test process:
// the workers of the hosts it runs.
func workerPIDs(t *testing.T) map[int]bool {
	t.Helper()
	out := map[int]bool{}
	entries, _ := os.ReadDir("/proc")
	me := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command: state, ppid, ...
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) > 1 && f[1] == me {
			out[pid] = true
		}
	}
	return out
}

// newWorkers lists the worker processes started since before was taken
// (those of the test's host: others may still be exiting).
func newWorkers(t *testing.T, before map[int]bool) []int {
	t.Helper()
	var out []int
	for pid := range workerPIDs(t) {
		if !before[pid] {
			out = append(out, pid)
		}
	}
	return out
}

func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

func layersByName(h *client.Health) map[string]client.ConfinementLayer {
	out := map[string]client.ConfinementLayer{}
	for _, l := range h.WorkerConfinement {
		out[l.Name] = l
	}
	return out
}

var allLayers = []string{"environment", "no_new_privs", "capabilities", "user_namespace", "network_namespace", "rlimits", "landlock", "seccomp"}

// TestWorkerConfinement: a worker process, seen from outside, has
// no_new_privs, a seccomp filter, no effective capabilities and an empty
// environment (the host's token is not in it), and the host's Health lists
// every layer; tasks still run.
func TestWorkerConfinement(t *testing.T) {
	t.Setenv("RAYHOST_TOKEN", "secret-token-the-worker-must-not-see")
	before := workerPIDs(t)
	_, c, mod := setup(t, nil)
	var sum int
	mustCall(t, c, mod, "add", &sum, 1, 2)
	if sum != 3 {
		t.Fatalf("add(1, 2) = %d", sum)
	}
	pids := newWorkers(t, before)
	if len(pids) == 0 {
		t.Fatal("no worker process found")
	}
	for _, pid := range pids {
		st := procStatus(t, pid)
		for k, want := range map[string]string{"NoNewPrivs": "1", "Seccomp": "2", "CapEff": "0000000000000000", "CapPrm": "0000000000000000"} {
			if st[k] != want {
				t.Errorf("worker %d: %s = %q, want %q", pid, k, st[k], want)
			}
		}
		env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		if len(env) != 0 {
			t.Errorf("worker %d has an environment: %q", pid, env)
		}
	}

	health, err := c.Health(ctxFor(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	layers := layersByName(health)
	for _, name := range allLayers {
		l, ok := layers[name]
		if !ok {
			t.Errorf("health does not list layer %q", name)
			continue
		}
		if l.Detail == "" {
			t.Errorf("layer %q has no detail", name)
		}
		t.Logf("%-18s active=%-5v %s", name, l.Active, l.Detail)
	}
	// What the test saw from outside, health must report as in force.
	for _, name := range []string{"environment", "no_new_privs", "capabilities", "seccomp", "rlimits"} {
		if !layers[name].Active {
			t.Errorf("layer %q not active: %s", name, layers[name].Detail)
		}
	}

	mustCall(t, c, mod, "add", &sum, 40, 2)
	if sum != 42 {
		t.Fatalf("add(40, 2) after the checks = %d", sum)
	}
}

// TestWorkerConfinementOff: DisableWorkerConfinement starts workers without
// the layers (health says so, with why), still with an empty environment,
// and tasks run.
func TestWorkerConfinementOff(t *testing.T) {
	before := workerPIDs(t)
	_, c, mod := setup(t, func(cfg *host.Config) { cfg.DisableWorkerConfinement = true })
	var sum int
	mustCall(t, c, mod, "add", &sum, 1, 2)
	health, err := c.Health(ctxFor(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	layers := layersByName(health)
	if l := layers["seccomp"]; l.Active || !strings.Contains(l.Detail, "turned off") {
		t.Errorf("seccomp layer with confinement off: %+v", l)
	}
	for _, pid := range newWorkers(t, before) {
		if st := procStatus(t, pid); st["Seccomp"] != "0" {
			t.Errorf("worker %d: Seccomp = %q with confinement off", pid, st["Seccomp"])
		}
	}
}
