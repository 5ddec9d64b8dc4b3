// This file holds the conformance cases run concurrently: goroutines
// putting and reading distinct and shared objects, and streaming writers
// racing on one ObjectID.

package store

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/rayhost/rayhost/internal/ids"
)

// testConcurrent hammers the store from several goroutines putting and
// reading distinct ids and racing on shared ones.
func testConcurrent(t *testing.T, s Store) {
	const (
		goroutines = 8
		iterations = 60
		shared     = 5
	)
	ctx := t.Context()
	sharedIDs := make([]ids.ObjectID, shared)
	for i := range sharedIDs {
		sharedIDs[i] = newID()
	}
	// sharedValue is what goroutine g puts under shared id i; its first
	// byte names g so a reader can tell which write won.
	sharedValue := func(i, g int) []byte {
		n := 100
		if i%2 == 1 {
			n = 70_000 + i
		}
		v := content(uint64(1000*i+g), n)
		v[0] = byte(g)
		return v
	}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			err := func() error {
				for it := range iterations {
					id := newID()
					n := (it * 997) % 3000
					if it%10 == 0 {
						n = 100_000 + it
					}
					data := content(uint64(g*iterations+it), n)
					if it%3 == 0 {
						w, err := s.Create(ctx, id, Meta{Size: -1})
						if err != nil {
							return err
						}
						if _, err := w.Write(data); err != nil {
							return err
						}
						if err := w.Commit(ctx); err != nil {
							return err
						}
					} else if err := s.Put(ctx, id, Meta{Size: int64(n)}, data); err != nil {
						return err
					}
					_, got, err := s.Get(ctx, id)
					if err != nil {
						return err
					}
					if !bytes.Equal(got, data) {
						return fmt.Errorf("distinct id %s: wrong value", id)
					}
					if it%4 == 0 {
						if err := s.Delete(ctx, id); err != nil {
							return err
						}
					}

					i := it % shared
					if err := s.Put(ctx, sharedIDs[i], Meta{Size: -1}, sharedValue(i, g)); err != nil {
						return err
					}
					_, got, err = s.Get(ctx, sharedIDs[i])
					if err != nil {
						return err
					}
					if len(got) == 0 || int(got[0]) >= goroutines || !bytes.Equal(got, sharedValue(i, int(got[0]))) {
						return fmt.Errorf("shared id %d: value is no goroutine's", i)
					}
				}
				return nil
			}()
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// testConcurrentWritersSameID races streaming writers of one id: all
// commits succeed and exactly one value wins, unmixed.
func testConcurrentWritersSameID(t *testing.T, s Store) {
	const writers = 4
	ctx := t.Context()
	chunk := chunkSizeOf(s)
	id := newID()
	values := make([][]byte, writers)
	for i := range values {
		values[i] = content(uint64(500+i), 2*chunk+chunk/2)
	}
	ws := make([]Writer, writers)
	for i := range ws {
		w, err := s.Create(ctx, id, Meta{Size: -1})
		if err != nil {
			t.Fatal(err)
		}
		ws[i] = w
	}
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i, w := range ws {
		wg.Go(func() {
			for p := values[i]; len(p) > 0; {
				k := min(len(p), 10_000)
				if _, err := w.Write(p[:k]); err != nil {
					errs[i] = err
					return
				}
				p = p[k:]
			}
			errs[i] = w.Commit(ctx)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	_, got, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	winners := 0
	for _, v := range values {
		if bytes.Equal(got, v) {
			winners++
		}
	}
	if winners != 1 {
		t.Fatalf("stored value matches %d writers, want 1", winners)
	}
	if b, ok := s.(*Badger); ok {
		// The losers' chunks (or files) are gone.
		want, files := 3, 0
		if b.fileMin > 0 {
			want, files = 0, 1
		}
		if n := countChunks(t, b); n != want {
			t.Errorf("%d chunk keys, want %d", n, want)
		}
		if n := countFiles(t, b); n != files {
			t.Errorf("%d value files, want %d", n, files)
		}
	}
}
