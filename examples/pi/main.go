// Command pi is the tasks guide's complete example: estimate π with 10
// sampling tasks that report their progress to a ProgressActor, while the
// driver polls the actor once a second.
//
//	rayhost run ./examples/pi
package main

import (
	"context"
	"fmt"
	"time"

	"github.com/rayhost/rayhost/examples/pi/sample"
	"github.com/rayhost/rayhost/guest-sdk/ray"
)

const (
	NumSamplingTasks  = 10
	NumSamplesPerTask = 10_000_000
	TotalNumSamples   = NumSamplingTasks * NumSamplesPerTask
)

// ProgressActor tracks the samples each task has completed.
type ProgressActor struct {
	Total     int
	Completed map[int]int
}

var progressActor = ray.Actor1("ProgressActor", func(ctx context.Context, total int) (*ProgressActor, error) {
	return &ProgressActor{Total: total, Completed: map[int]int{}}, nil
})

var reportProgress = ray.Method2(progressActor, "report_progress", func(a *ProgressActor, ctx context.Context, taskID, completed int) (bool, error) {
	a.Completed[taskID] = completed
	return true, nil
})

var getProgress = ray.Method0(progressActor, "get_progress", func(a *ProgressActor, ctx context.Context) (float64, error) {
	sum := 0
	for _, n := range a.Completed {
		sum += n
	}
	return float64(sum) / float64(a.Total), nil
})

// samplingTask receives the actor's handle as an argument, like the guide's.
// The sampling loop is sample.Inside: the guide's (two rng.Float64, a
// math.Hypot) with the same numbers, written so that it runs at native
// speed under Wasm (see package sample).
var samplingTask = ray.Func3("sampling_task", func(ctx context.Context, numSamples, taskID int, progress ray.ActorHandle[ProgressActor]) (int, error) {
	rng := sample.New(uint64(taskID))
	numInside := 0
	for done := 0; done < numSamples; {
		// Report progress every 1 million samples.
		n := min(1_000_000, numSamples-done)
		numInside += rng.Inside(n)
		done += n
		if done%1_000_000 == 0 {
			reportProgress.Remote(progress, taskID, done)
		}
	}
	// Report the final progress.
	reportProgress.Remote(progress, taskID, numSamples)
	return numInside, nil
})

func init() { ray.Main(run) }

func run(ctx context.Context) error {
	start := time.Now()
	progress := progressActor.Remote(TotalNumSamples)
	results := make([]ray.ObjectRef[int], NumSamplingTasks)
	for i := range results {
		results[i] = samplingTask.Remote(NumSamplesPerTask, i, progress)
	}
	// Query progress periodically.
	for {
		p, err := ray.Get(ctx, getProgress.Remote(progress))
		if err != nil {
			return err
		}
		fmt.Printf("Progress: %d%%\n", int(p*100))
		if p == 1 {
			break
		}
		if err := ray.Sleep(ctx, time.Second); err != nil {
			return err
		}
	}
	counts, err := ray.GetAll(ctx, results)
	if err != nil {
		return err
	}
	inside := 0
	for _, n := range counts {
		inside += n
	}
	pi := float64(inside) * 4 / TotalNumSamples
	fmt.Printf("Estimated value of π is: %v\n", pi)
	fmt.Printf("(%d samples in %.2f s)\n", TotalNumSamples, time.Since(start).Seconds())
	return nil
}

func main() {}
