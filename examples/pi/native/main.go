// Command native is examples/pi's computation as plain Go, for comparing
// the guest's speed with native code: the same 10 × 10,000,000 samples with
// the same code (package sample), on goroutines.
//
//	go run ./examples/pi/native
package main

import (
	"fmt"
	"sync"
	"time"

	"github.com/rayhost/rayhost/examples/pi/sample"
)

func main() {
	const tasks, samples = 10, 10_000_000
	start := time.Now()
	inside := make([]int, tasks)
	var wg sync.WaitGroup
	for t := range tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inside[t] = sample.New(uint64(t)).Inside(samples)
		}()
	}
	wg.Wait()
	total := 0
	for _, n := range inside {
		total += n
	}
	fmt.Printf("Estimated value of π is: %v\n(%d samples in %.2f s)\n", float64(total)*4/(tasks*samples), tasks*samples, time.Since(start).Seconds())
}
