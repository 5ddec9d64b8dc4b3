// Command guest is the guest of package conformance: small remote
// functions, actors and probes, one group per behaviour of issue 15 ("Ray
// semantics, second pass"). A probe runs a scenario inside the cluster,
// where actors and the SDK's errors live, and returns what it saw as a
// list of [Step] values that the test compares with what Ray documents.
package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

// Step is one observation of a probe: what it did and what it got, a
// value or the name of the SDK sentinel its error matches, with the
// error's text in Detail.
type Step struct {
	What   string `json:"what"`
	Got    string `json:"got"`
	Detail string `json:"detail,omitempty"`
}

// steps collects a probe's observations.
type steps []Step

func (s *steps) add(what string, v any, err error) {
	if err != nil {
		*s = append(*s, Step{What: what, Got: token(err), Detail: short(err.Error())})
		return
	}
	*s = append(*s, Step{What: what, Got: fmt.Sprint(v)})
}

// short cuts an error's text (a guest's stack, say) to its start.
func short(msg string) string {
	const max = 400
	if len(msg) > max {
		return msg[:max] + "…"
	}
	return msg
}

// token names the sentinel err matches, most specific first.
func token(err error) string {
	for _, k := range []struct {
		name string
		err  error
	}{
		{"ErrActorDied", ray.ErrActorDied},
		{"ErrWorkerDied", ray.ErrWorkerDied},
		{"ErrTaskCancelled", ray.ErrTaskCancelled},
		{"ErrTaskTimeout", ray.ErrTaskTimeout},
		{"ErrGetTimeout", ray.ErrGetTimeout},
		{"ErrBadArgument", ray.ErrBadArgument},
		{"ErrNotFound", ray.ErrNotFound},
		{"ErrTaskFailed", ray.ErrTaskFailed},
		{"ErrHost", ray.ErrHost},
	} {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return "error"
}

// bounded is ctx with a deadline well inside the test's hang guard, so a
// probe reports a call that never ends (ErrGetTimeout) instead of hanging.
func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, time.Minute)
}

var add = ray.Func2("add", func(ctx context.Context, a, b int) (int, error) {
	return a + b, nil
})

var _ = ray.Func3("add3", func(ctx context.Context, a, b, c int) (int, error) {
	return a + b + c, nil
})

var _ = ray.Func1("fail", func(ctx context.Context, msg string) (int, error) {
	return 0, errors.New(msg)
})

// failAfter fails with msg after ms milliseconds.
var _ = ray.Func2("fail_after", func(ctx context.Context, msg string, ms int) (int, error) {
	if err := ray.Sleep(ctx, time.Duration(ms)*time.Millisecond); err != nil {
		return 0, err
	}
	return 0, errors.New(msg)
})

var driverChild = ray.Func0("driver_child", func(ctx context.Context) (string, error) {
	return ray.TaskID(ctx), nil
})

func init() { ray.Main(run) }

// run is the driver: it submits one task and waits for it, so that the
// task list shows the driver as that task's parent.
func run(ctx context.Context) error {
	_, err := ray.Get(ctx, driverChild.Remote())
	return err
}

func main() {}
