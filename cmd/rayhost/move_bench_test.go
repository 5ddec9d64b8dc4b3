package main

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/internal/testutil"
)

// BenchmarkMove100MiB moves a 100 MiB task result from the host that made
// it to another host of a cluster of processes and reports the peak extra
// resident memory (RssAnon) of both during the move: objects move in
// chunks, so each peak should stay well under the object's size.
//
//	go test -run '^$' -bench Move100MiB -benchtime 3x ./cmd/rayhost
func BenchmarkMove100MiB(b *testing.B) {
	const n = 100 << 20
	hosts := testutil.StartProcCluster(b, 2, testutil.ProcOptions{})
	from, to := hosts[0], hosts[1]
	mod := testutil.Register(b, from.Client, guestPkg)
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	var sender, receiver int64
	for b.Loop() {
		b.StopTimer()
		refs, err := from.Client.SubmitCall(ctx, client.Call{Module: mod, Function: "make_bytes", Args: []any{n},
			Scheduling: client.Scheduling{NodeID: from.ID}})
		if err != nil {
			b.Fatal(err)
		}
		made := refs[0]
		if _, _, err := from.Client.Wait(ctx, []client.ObjectRef{made}, 1, -1); err != nil {
			b.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond) // a figure, not a sync: let the sender's heap settle after its worker's result
		b.StartTimer()
		peaks := peakDuring([]int{from.Pid(), to.Pid()}, func() {
			if _, err := to.Client.GetStream(ctx, made, io.Discard); err != nil {
				b.Error(err)
			}
		})
		sender, receiver = max(sender, peaks[0]), max(receiver, peaks[1])
	}
	b.SetBytes(n)
	b.ReportMetric(float64(sender)/(1<<20), "sender-peak-MiB")
	b.ReportMetric(float64(receiver)/(1<<20), "receiver-peak-MiB")
}
