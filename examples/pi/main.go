// Command pi is the tasks guide's complete example: estimate π with 10
// sampling tasks that report their progress to a ProgressActor, while the
// driver polls the actor once a second.
//
//	rayhost run ./examples/pi
package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

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
var samplingTask = ray.Func3("sampling_task", func(ctx context.Context, numSamples, taskID int, progress ray.ActorHandle[ProgressActor]) (int, error) {
	rng := rand.New(rand.NewPCG(uint64(taskID), 42))
	numInside := 0
	for i := range numSamples {
		x, y := rng.Float64()*2-1, rng.Float64()*2-1
		if math.Hypot(x, y) <= 1 {
			numInside++
		}
		// Report progress every 1 million samples.
		if (i+1)%1_000_000 == 0 {
			reportProgress.Remote(progress, taskID, i+1)
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
