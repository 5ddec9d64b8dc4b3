package workerpool_test

import (
	"context"
	"fmt"

	"github.com/rayhost/rayhost/host/internal/launch"
	"github.com/rayhost/rayhost/host/internal/workerpool"
	"github.com/rayhost/rayhost/internal/ipc"
)

// handler makes every new worker idle and says so.
type handler struct {
	pool  *workerpool.Pool
	ready chan *workerpool.Worker
}

func (h *handler) Ready(w *workerpool.Worker, hello []byte) {
	w.Value = "my state for this worker"
	h.pool.Idle(w)
	h.ready <- w
}

func (h *handler) StartFailed(err error) { fmt.Println("no worker:", err) }

func (h *handler) Frame(w *workerpool.Worker, typ ipc.Type, payload []byte) error {
	return nil // a host runs the guest's calls and collects its results
}

func (h *handler) Exited(w *workerpool.Worker, err error) {}

func Example() {
	h := &handler{ready: make(chan *workerpool.Worker, 1)}
	cfg := workerpool.DefaultConfig(launch.InProcessLauncher{}, h)
	p, err := workerpool.New(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	h.pool = p
	defer p.Close(context.Background())

	if err := p.Start(); err != nil {
		fmt.Println(err)
		return
	}
	<-h.ready
	fmt.Printf("%+v\n", p.Stats())
	w, _ := p.Take()
	fmt.Println(w.Value)
	fmt.Printf("%+v\n", p.Stats())
	// Output:
	// {Live:1 Idle:1 Starting:0}
	// my state for this worker
	// {Live:1 Idle:0 Starting:0}
}
