// Command quicksort is the tasks guide's nested-parallelism pattern: a
// remote quicksort that calls itself remotely on both halves until they
// are small. A task blocked in Get gives its CPU back, so this finishes even
// on a host with one CPU.
//
//	rayhost run --num-cpus 1 ./examples/quicksort
package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

// Size is how many numbers the driver sorts; Threshold is the guide's
// limit below which a task sorts locally instead of splitting.
const (
	Size      = 1_000_000
	Threshold = 200_000
)

func partition(collection []int) (lesser []int, pivot int, greater []int) {
	pivot = collection[len(collection)-1]
	for _, e := range collection[:len(collection)-1] {
		if e > pivot {
			greater = append(greater, e)
		} else {
			lesser = append(lesser, e)
		}
	}
	return lesser, pivot, greater
}

var quickSortDistributed *ray.Function[[]int]

func init() {
	quickSortDistributed = ray.Func1("quick_sort_distributed", func(ctx context.Context, collection []int) ([]int, error) {
		// Use a threshold to avoid over-parallelizing.
		if len(collection) <= Threshold {
			slices.Sort(collection)
			return collection, nil
		}
		lesser, pivot, greater := partition(collection)
		lesserRef := quickSortDistributed.Remote(lesser)
		greaterRef := quickSortDistributed.Remote(greater)
		l, err := ray.Get(ctx, lesserRef)
		if err != nil {
			return nil, err
		}
		g, err := ray.Get(ctx, greaterRef)
		if err != nil {
			return nil, err
		}
		return append(append(l, pivot), g...), nil
	})
	ray.Main(run)
}

func run(ctx context.Context) error {
	rng := rand.New(rand.NewPCG(1, 2))
	unsorted := make([]int, Size)
	for i := range unsorted {
		unsorted[i] = rng.IntN(Size)
	}
	start := time.Now()
	local := slices.Clone(unsorted)
	slices.Sort(local)
	fmt.Printf("local sort of %d ints: %.2f s\n", Size, time.Since(start).Seconds())

	start = time.Now()
	sorted, err := ray.Get(ctx, quickSortDistributed.Remote(unsorted))
	if err != nil {
		return err
	}
	fmt.Printf("distributed sort of %d ints: %.2f s\n", Size, time.Since(start).Seconds())
	if !slices.Equal(sorted, local) {
		return fmt.Errorf("the distributed sort is wrong")
	}
	fmt.Println("sorted correctly")
	return nil
}

func main() {}
