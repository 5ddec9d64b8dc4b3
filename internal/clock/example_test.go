package clock_test

import (
	"fmt"
	"time"

	"github.com/rayhost/rayhost/internal/clock"
)

// A test drives a timeout without waiting for it.
func ExampleFake() {
	c := clock.NewFake(time.Unix(0, 0))
	c.AfterFunc(30*time.Second, func() { fmt.Println("timed out") })
	c.Advance(29 * time.Second)
	fmt.Println("still running")
	c.Advance(time.Second)
	// Output:
	// still running
	// timed out
}
