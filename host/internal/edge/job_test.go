package edge

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// drain takes every queued event without waiting: a closed tick always
// fires.
func drain(t *testing.T, j *Job) []*rayhostv1.RunResponse {
	t.Helper()
	tick := make(chan time.Time)
	close(tick)
	var all []*rayhostv1.RunResponse
	for {
		evs, err := j.Next(context.Background(), tick)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return all
		}
		all = append(all, evs...)
	}
}

func TestJobLogsProgressAndResult(t *testing.T) {
	j := NewJob()
	task := ids.NewTaskID()
	j.Count(Submitted)
	j.Count(Submitted)
	j.Count(Finished)
	j.Count(Failed)
	j.Log(task, "f", "h1", 1, []byte("out\n"))
	j.Log(task, "f", "h1", 2, []byte("err\n"))
	fetchedObj, lostObj := ids.NewTaskID().Return(0), ids.NewTaskID().Return(0)
	j.Failed(fetchedObj, &abi.TaskError{Kind: abi.ErrorApplication, Function: "a", Message: "seen"})
	j.Failed(lostObj, &abi.TaskError{Kind: abi.ErrorApplication, Function: "b", Message: "never fetched"})
	select {
	case <-j.Ended():
		t.Fatal("ended before Finish")
	default:
	}
	fetched := func(id ids.ObjectID) bool { return id == fetchedObj }
	j.Finish((&abi.TaskError{Kind: abi.ErrorPanic, Function: "main", Message: "bad"}).Encode(), fetched, "h1")
	j.Finish(abi.Value{}, fetched, "h1") // only the first counts
	<-j.Ended()

	p := j.ProgressEvent()
	if p.GetSubmitted() != 2 || p.GetFinished() != 1 || p.GetFailed() != 1 || p.GetCancelled() != 0 {
		t.Errorf("progress %v", p)
	}
	evs := drain(t, j)
	if len(evs) != 4 {
		t.Fatalf("%d events: %v", len(evs), evs)
	}
	if l := evs[0].GetLog(); l.GetStream() != "stdout" || string(l.GetData()) != "out\n" || l.GetTaskId() != task.String() || l.GetHost() != "h1" {
		t.Errorf("first %v", evs[0])
	}
	if l := evs[1].GetLog(); l.GetStream() != "stderr" {
		t.Errorf("second %v", evs[1])
	}
	if l := evs[2].GetLog(); l.GetStream() != "stderr" || !strings.Contains(string(l.GetData()), "never fetched") ||
		strings.Contains(string(l.GetData()), "seen") || l.GetTaskId() != lostObj.Task().String() {
		t.Errorf("the unfetched failure: %v", evs[2])
	}
	if r := evs[3].GetResult(); r == nil || !strings.Contains(r.GetError(), "panic: bad") {
		t.Errorf("result %v", evs[3])
	}
}

func TestJobDropsOutputPastItsBacklog(t *testing.T) {
	j := NewJob()
	task := ids.NewTaskID()
	chunk := make([]byte, 1<<20)
	for range maxJobBacklog>>20 + 3 {
		j.Log(task, "f", "h", 1, chunk)
	}
	j.Finish(abi.Value{}, func(ids.ObjectID) bool { return true }, "h")
	evs := drain(t, j)
	if got := len(evs); got != maxJobBacklog>>20+1 {
		t.Errorf("%d events kept, want the backlog's %d and the result", got, maxJobBacklog>>20)
	}
	if evs[len(evs)-1].GetResult() == nil {
		t.Error("the result must never be dropped")
	}
	j.mu.Lock()
	dropped := j.dropped
	j.mu.Unlock()
	if dropped != 3<<20 {
		t.Errorf("dropped %d bytes", dropped)
	}
}

func TestJobNextEndsWithItsCaller(t *testing.T) {
	j := NewJob()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := j.Next(ctx, nil)
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Next: %v", err)
	}
}
