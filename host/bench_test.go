package host_test

import (
	"testing"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/internal/testutil"
)

// BenchmarkActorCalls measures 1:1 actor calls from a driver inside the host
// (a task), as Ray's 1_1_actor_calls_sync and _async do: call and get one at
// a time, and 1,000 in flight.
func BenchmarkActorCalls(b *testing.B) {
	h := testutil.StartHost(b, nil)
	c := client.New(h.Addr())
	mod := testutil.Register(b, c, guestPkg)
	for _, mode := range []struct {
		name  string
		async bool
		n     int
	}{{"sync", false, 2000}, {"async", true, 1000}} {
		b.Run(mode.name, func(b *testing.B) {
			var rate float64
			for b.Loop() {
				ref, err := c.Submit(b.Context(), mod, "actor_call_rate", mode.n, mode.async)
				if err != nil {
					b.Fatal(err)
				}
				if err := c.Get(b.Context(), ref, &rate); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(rate, "calls/s")
		})
	}
}
