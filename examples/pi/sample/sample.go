// Package sample is the Monte Carlo π kernel of examples/pi, shared by the
// guest and its native twin (examples/pi/native) so that both run the same
// code.
//
// It draws from the same stream as math/rand/v2's rand.New(rand.NewPCG(seed,
// 42)).Float64, bit for bit, but written so that Go's wasm backend compiles
// it well: rand.PCG's methods are too costly to inline on wasm (math/bits.Add64
// is not an intrinsic there), so every Float64 became two calls through an
// interface, each ~6 ns under wazero; here one step inlines and the state
// stays in locals. And the test is x²+y² ≤ 1, not math.Hypot, which is
// assembly on amd64 but a pure-Go call on wasm. Guest against native, one
// goroutine each: 5.2× with rand.Rand and Hypot, 1.9× with this
// (docs/BENCHMARKS.md, "Monte Carlo π").
package sample

import "math/bits"

// Sampler is a PCG-DXSM generator (rand.PCG's algorithm and constants).
type Sampler struct{ hi, lo uint64 }

// New returns the sampler of rand.NewPCG(seed, 42).
func New(seed uint64) *Sampler { return &Sampler{hi: seed, lo: 42} }

// step advances the state and returns the next output, as rand.PCG.Uint64.
func step(hi0, lo0 uint64) (out, hi, lo uint64) {
	const (
		mulHi = 2549297995355413924
		mulLo = 4865540595714422341
		incHi = 6364136223846793005
		incLo = 1442695040888963407
	)
	hi, lo = bits.Mul64(lo0, mulLo)
	hi += hi0*mulLo + lo0*mulHi
	lo += incLo
	if lo < incLo {
		hi++
	}
	hi += incHi
	out = hi
	out ^= out >> 32
	out *= 0xda942042e4dd58b5
	out ^= out >> 48
	out *= lo | 1
	return out, hi, lo
}

// Inside draws n points uniformly from [-1, 1)² and returns how many fall
// inside the unit circle.
func (s *Sampler) Inside(n int) int {
	hi, lo := s.hi, s.lo
	inside := 0
	var u, v uint64
	for range n {
		u, hi, lo = step(hi, lo)
		v, hi, lo = step(hi, lo)
		x := float64(u<<11>>11)/(1<<53)*2 - 1
		y := float64(v<<11>>11)/(1<<53)*2 - 1
		if x*x+y*y <= 1 {
			inside++
		}
	}
	s.hi, s.lo = hi, lo
	return inside
}
