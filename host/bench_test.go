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

// BenchmarkCluster measures work that crosses hosts, in an in-process
// two-host cluster on one machine (both share its cores, so this is the
// cost of crossing, not scaling): trivial tasks placed on the peer against
// the same tasks kept local, 1,000 per op submitted in one batch; and an
// object made on one host read whole through the other, which pulls it in
// chunks into its store and streams it to the client.
func BenchmarkCluster(b *testing.B) {
	hosts := testutil.StartCluster(b, 2, nil)
	c := client.New(hosts[0].Addr())
	mod := testutil.Register(b, c, guestPkg)
	for _, where := range []struct{ name, node string }{{"tasks_local", hosts[0].ID()}, {"tasks_on_peer", hosts[1].ID()}} {
		b.Run(where.name, func(b *testing.B) {
			calls := make([]client.Call, 1000)
			for i := range calls {
				calls[i] = client.Call{Module: mod, Function: "add", Args: []any{i, 1}, Scheduling: client.Scheduling{NodeID: where.node}}
			}
			for b.Loop() {
				refs, err := c.SubmitBatch(b.Context(), calls)
				if err != nil {
					b.Fatal(err)
				}
				flat := make([]client.ObjectRef, len(refs))
				for i, r := range refs {
					flat[i] = r[0]
				}
				if _, _, err := c.Wait(b.Context(), flat, len(flat), -1); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(calls))/b.Elapsed().Seconds(), "tasks/s")
		})
	}
	b.Run("pull_64MiB", func(b *testing.B) {
		const n = 64 << 20
		b.SetBytes(n)
		var sink countingWriter
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			made, err := c.SubmitCall(b.Context(), client.Call{Module: mod, Function: "make_bytes", Args: []any{n},
				Scheduling: client.Scheduling{NodeID: hosts[1].ID()}})
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := c.Wait(b.Context(), made[:1], 1, -1); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := c.GetStream(b.Context(), made[0], &sink); err != nil {
				b.Fatal(err)
			}
		}
		if sink.n != int64(b.N)*n {
			b.Fatalf("read %d bytes, want %d", sink.n, int64(b.N)*n)
		}
	})
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }
