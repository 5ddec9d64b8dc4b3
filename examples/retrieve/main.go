// Command retrieve is seed 004 of the Ray guide in Go: eight lookups in a
// "database", each delayed by its index / 10 seconds, run four ways — the
// sequential baseline, as remote tasks, with the database in the object
// store (Put), and consuming results as they finish (Wait).
//
//	rayhost run ./examples/retrieve
package main

import (
	"context"
	"fmt"
	"time"

	"github.com/rayhost/rayhost/guest-sdk/ray"
)

var database = []string{"Learning", "Ray", "Flexible", "Distributed", "Python", "for", "Machine", "Learning"}

// Item is what one lookup returns: the index and the word.
type Item struct {
	Index int    `json:"index"`
	Word  string `json:"word"`
}

func retrieve(ctx context.Context, idx int, db []string) (Item, error) {
	// ray.Sleep is time.Sleep that a cancel can interrupt.
	if err := ray.Sleep(ctx, time.Duration(idx)*time.Second/10); err != nil {
		return Item{}, err
	}
	return Item{Index: idx, Word: db[idx]}, nil
}

// retrieveTask reads the driver's copy of the database (shipped with the module).
var retrieveTask = ray.Func1("retrieve_task", func(ctx context.Context, idx int) (Item, error) {
	return retrieve(ctx, idx, database)
})

// retrieveFromStore receives the database as an argument: an ObjectRef made
// by ray.Put arrives as its value.
var retrieveFromStore = ray.Func2("retrieve_from_store", retrieve)

func init() { ray.Main(run) }

func printRuntime(label string, items []Item, start time.Time) {
	fmt.Printf("%s: runtime %.2f s, data: %v\n", label, time.Since(start).Seconds(), items)
}

func run(ctx context.Context) error {
	// Sequential baseline: 0.0+0.1+…+0.7 = 2.8 s.
	start := time.Now()
	var seq []Item
	for idx := range 8 {
		it, err := retrieve(ctx, idx, database)
		if err != nil {
			return err
		}
		seq = append(seq, it)
	}
	printRuntime("sequential", seq, start)

	// Remote tasks: bounded by the slowest, 0.7 s.
	start = time.Now()
	refs := make([]ray.ObjectRef[Item], 8)
	for idx := range refs {
		refs[idx] = retrieveTask.Remote(idx)
	}
	items, err := ray.GetAll(ctx, refs)
	if err != nil {
		return err
	}
	printRuntime("remote", items, start)

	// The database in the object store, shared by reference.
	start = time.Now()
	dbRef := ray.Put(database)
	for idx := range refs {
		refs[idx] = retrieveFromStore.Remote(idx, dbRef)
	}
	if items, err = ray.GetAll(ctx, refs); err != nil {
		return err
	}
	printRuntime("put", items, start)

	// Wait: take results two at a time as they finish.
	start = time.Now()
	for idx := range refs {
		refs[idx] = retrieveFromStore.Remote(idx, dbRef)
	}
	var all []Item
	for len(refs) > 0 {
		var finished []ray.ObjectRef[Item]
		finished, refs, err = ray.Wait(ctx, refs, min(2, len(refs)), 7*time.Second)
		if err != nil {
			return err
		}
		data, err := ray.GetAll(ctx, finished)
		if err != nil {
			return err
		}
		printRuntime("wait", data, start)
		all = append(all, data...)
	}
	printRuntime("wait total", all, start)
	return nil
}

func main() {}
