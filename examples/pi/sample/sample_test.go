package sample

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// The sampler is rand.New(rand.NewPCG(seed, 42)) with math.Hypot, point
// for point, across calls.
func TestSameAsRandPCG(t *testing.T) {
	for _, seed := range []uint64{0, 1, 7, 1 << 63} {
		rng := rand.New(rand.NewPCG(seed, 42))
		s := New(seed)
		for _, n := range []int{1, 999, 100_000} {
			want := 0
			for range n {
				x, y := rng.Float64()*2-1, rng.Float64()*2-1
				if math.Hypot(x, y) <= 1 {
					want++
				}
			}
			if got := s.Inside(n); got != want {
				t.Fatalf("seed %d, %d samples: %d inside, rand.PCG and Hypot give %d", seed, n, got, want)
			}
		}
	}
}

func ExampleSampler_Inside() {
	const n = 1_000_000
	inside := New(1).Inside(n)
	fmt.Printf("π ≈ %.2f\n", 4*float64(inside)/n)
	// Output: π ≈ 3.14
}

func BenchmarkInside(b *testing.B) {
	s := New(1)
	for b.Loop() {
		s.Inside(1000)
	}
}
