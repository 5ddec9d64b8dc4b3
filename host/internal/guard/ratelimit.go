package guard

import (
	"sync"
	"time"
)

// rateLimiter is a token bucket per key (a client's IP address).
type rateLimiter struct {
	rate, burst float64
	now         func() time.Time // time.Now; tests set a fake clock

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxRateKeys bounds the keys a rateLimiter tracks; past it, full buckets
// are forgotten, and if none is, new keys share one.
const maxRateKeys = 10_000

func newRateLimiter(rate float64, burst int) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(burst), now: time.Now, buckets: map[string]*bucket{}}
}

func (l *rateLimiter) allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxRateKeys {
			for k, x := range l.buckets {
				if x.tokens+now.Sub(x.last).Seconds()*l.rate >= l.burst {
					delete(l.buckets, k)
				}
			}
			if len(l.buckets) >= maxRateKeys {
				key = "" // everyone else shares one bucket
			}
		}
		if b = l.buckets[key]; b == nil {
			b = &bucket{tokens: l.burst, last: now}
			l.buckets[key] = b
		}
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
