// Command soak is the soak of issue 16: a driver that loops over tasks
// with 1 KiB results and Puts of 1 MiB, dropping every ref as it goes, so
// that what the host holds (objects, memory, disk) stays flat however long
// it runs.
//
//	rayhost run --env SOAK_TASKS=1000000 --env SOAK_PUTS=10000 ./bench/soak
//
// prints a progress line at every tenth of the run; `rayhost microbenchmark
// --soak` runs it on a host of its own and prints the host's RSS and data
// directory beside each line. The Soaker actor runs the same loop in
// phases, for tests that look at the host between them.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

// ResultSize is the size of a task's result.
const ResultSize = 1 << 10

// result returns ResultSize bytes, the first of which is i's low byte.
var result = ray.Func1("soak_result", func(ctx context.Context, i int) ([]byte, error) {
	b := make([]byte, ResultSize)
	b[0] = byte(i)
	return b, nil
})

// Counts is what a run (or a phase) did.
type Counts struct {
	Tasks int `json:"tasks"`
	Puts  int `json:"puts"`
}

// run submits tasks tasks one at a time and gets each result, and puts
// puts values of putKiB KiB spread evenly among them, getting each back.
// No ref outlives its iteration: the SDK releases each once it is
// unreachable. every, if set, is called after each tenth of the tasks.
func run(ctx context.Context, tasks, puts, putKiB int, every func(tenth int, c Counts)) (Counts, error) {
	var c Counts
	putEvery := 0
	if puts > 0 {
		putEvery = max(tasks/puts, 1)
	}
	val := make([]byte, putKiB<<10)
	tenth := max(tasks/10, 1)
	for i := range tasks {
		b, err := ray.Get(ctx, result.Remote(i))
		if err != nil {
			return c, fmt.Errorf("task %d: %w", i, err)
		}
		if len(b) != ResultSize || b[0] != byte(i) {
			return c, fmt.Errorf("task %d returned %d bytes starting %d", i, len(b), b[0])
		}
		c.Tasks++
		if putEvery > 0 && i%putEvery == 0 && c.Puts < puts {
			val[0] = byte(c.Puts)
			got, err := ray.Get(ctx, ray.Put(val))
			if err != nil {
				return c, fmt.Errorf("put %d: %w", c.Puts, err)
			}
			if len(got) != len(val) || got[0] != val[0] {
				return c, fmt.Errorf("put %d read back %d bytes", c.Puts, len(got))
			}
			c.Puts++
		}
		if every != nil && (i+1)%tenth == 0 {
			every((i+1)/tenth, c)
		}
	}
	for c.Puts < puts { // fewer tasks than puts
		if _, err := ray.Get(ctx, ray.Put(val)); err != nil {
			return c, fmt.Errorf("put %d: %w", c.Puts, err)
		}
		c.Puts++
	}
	return c, nil
}

// Soaker runs the loop in phases: its refs are held by the actor (an
// actor's state outlives a call), so only the SDK's releases keep what
// the host holds from growing from one phase to the next.
type Soaker struct{ total Counts }

var soaker = ray.Actor0("Soaker", func(ctx context.Context) (*Soaker, error) { return &Soaker{}, nil })

// Phase is what a phase runs: tasks, and puts of PutKiB KiB.
type Phase struct {
	Tasks  int `json:"tasks"`
	Puts   int `json:"puts"`
	PutKiB int `json:"put_kib"`
}

// phase runs one phase; it returns the totals so far.
var phase = ray.Method1(soaker, "phase", func(s *Soaker, ctx context.Context, p Phase) (Counts, error) {
	c, err := run(ctx, p.Tasks, p.Puts, p.PutKiB, nil)
	s.total.Tasks += c.Tasks
	s.total.Puts += c.Puts
	return s.total, err
})

// soak_start creates the Soaker named name (detached: soak_phase and
// soak_stop find it after this task has ended).
var _ = ray.Func1("soak_start", func(ctx context.Context, name string) (bool, error) {
	return true, soaker.Options(ray.Name(name), ray.Detached()).Remote().Ready(ctx)
})

// soak_phase runs a phase on the Soaker named name.
var _ = ray.Func2("soak_phase", func(ctx context.Context, name string, p Phase) (Counts, error) {
	a, err := ray.GetActor[Soaker](ctx, name, "")
	if err != nil {
		return Counts{}, err
	}
	return ray.Get(ctx, phase.Remote(a, p))
})

// soak_stop kills the Soaker named name: what it held is released.
var _ = ray.Func1("soak_stop", func(ctx context.Context, name string) (bool, error) {
	a, err := ray.GetActor[Soaker](ctx, name, "")
	if err != nil {
		return false, err
	}
	return true, ray.Kill(a, true)
})

func envInt(name string, def int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s=%q: want a count", name, v)
	}
	return n, nil
}

func init() {
	ray.Main(func(ctx context.Context) error {
		tasks, err1 := envInt("SOAK_TASKS", 100_000)
		puts, err2 := envInt("SOAK_PUTS", 1_000)
		putKiB, err3 := envInt("SOAK_PUT_KIB", 1<<10)
		if err := errors.Join(err1, err2, err3); err != nil {
			return err
		}
		fmt.Printf("soak: %d tasks with %d-byte results, %d puts of %d KiB\n", tasks, ResultSize, puts, putKiB)
		start := time.Now()
		c, err := run(ctx, tasks, puts, putKiB, func(tenth int, c Counts) {
			// A line a reader (rayhost microbenchmark --soak) samples the host at.
			fmt.Printf("soak progress %d%%: %d tasks, %d puts, %.0f s\n", tenth*10, c.Tasks, c.Puts, time.Since(start).Seconds())
		})
		if err != nil {
			return err
		}
		el := time.Since(start)
		fmt.Printf("soak done: %d tasks, %d puts in %.0f s (%.0f tasks/s)\n", c.Tasks, c.Puts, el.Seconds(), float64(c.Tasks)/el.Seconds())
		return nil
	})
}

func main() {}
