// Command cancel is the tasks guide's "Cancelling Tasks": Get on a
// cancelled task's ref returns ErrTaskCancelled.
//
//	rayhost run ./examples/cancel
package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

var blockingOperation = ray.Func0("blocking_operation", func(ctx context.Context) (int, error) {
	// ray.Sleep, unlike time.Sleep, ends at once when the task is cancelled.
	return 0, ray.Sleep(ctx, 10e6*time.Second)
})

func init() { ray.Main(run) }

func run(ctx context.Context) error {
	objRef := blockingOperation.Remote()
	start := time.Now()
	if err := ray.Cancel(objRef, false, true); err != nil {
		return err
	}
	_, err := ray.Get(ctx, objRef)
	if !errors.Is(err, ray.ErrTaskCancelled) {
		return fmt.Errorf("want a cancelled task, got %v", err)
	}
	fmt.Printf("Object reference was cancelled (in %v).\n", time.Since(start).Round(time.Millisecond))
	return nil
}

func main() {}
