package store

import (
	"io"
	"runtime"
	"testing"

	"github.com/rayhost/rayhost/internal/ids"
)

var benchSizes = []struct {
	name string
	n    int
}{
	{"100B", 100},
	{"1MiB", 1 << 20},
	{"16MiB", 16 << 20},
}

func benchBadger(b *testing.B) *Badger {
	cfg := DefaultBadgerConfig(b.TempDir())
	cfg.GCInterval = -1
	return openBadger(b, cfg)
}

func BenchmarkBadgerPut(b *testing.B) {
	for _, bs := range benchSizes {
		b.Run(bs.name, func(b *testing.B) {
			s := benchBadger(b)
			data := content(1, bs.n)
			task := ids.NewTaskID()
			ctx := b.Context()
			b.SetBytes(int64(bs.n))
			b.ReportAllocs()
			var i uint32
			for b.Loop() {
				if err := s.Put(ctx, task.Put(i), Meta{Size: int64(bs.n)}, data); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkBadgerWriter(b *testing.B) {
	for _, bs := range benchSizes {
		b.Run(bs.name, func(b *testing.B) {
			s := benchBadger(b)
			data := content(1, bs.n)
			task := ids.NewTaskID()
			ctx := b.Context()
			b.SetBytes(int64(bs.n))
			b.ReportAllocs()
			var i uint32
			for b.Loop() {
				w, err := s.Create(ctx, task.Put(i), Meta{Size: -1})
				if err != nil {
					b.Fatal(err)
				}
				for p := data; len(p) > 0; {
					k := min(len(p), 64<<10)
					if _, err := w.Write(p[:k]); err != nil {
						b.Fatal(err)
					}
					p = p[k:]
				}
				if err := w.Commit(ctx); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkBadgerGet(b *testing.B) {
	for _, bs := range benchSizes {
		b.Run(bs.name, func(b *testing.B) {
			s := benchBadger(b)
			id := newID()
			mustPut(b, s, id, Meta{Size: -1}, content(1, bs.n))
			ctx := b.Context()
			b.SetBytes(int64(bs.n))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := s.Get(ctx, id); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkBadgerOpenRead(b *testing.B) {
	for _, bs := range benchSizes {
		b.Run(bs.name, func(b *testing.B) {
			s := benchBadger(b)
			id := newID()
			mustPut(b, s, id, Meta{Size: -1}, content(1, bs.n))
			ctx := b.Context()
			buf := make([]byte, 256<<10)
			b.SetBytes(int64(bs.n))
			b.ReportAllocs()
			for b.Loop() {
				_, r, err := s.Open(ctx, id)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, buf); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
}

// BenchmarkOpenBadger reports the Go heap one open store holds.
func BenchmarkOpenBadger(b *testing.B) {
	var heap int64
	for b.Loop() {
		dir := b.TempDir()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s, err := OpenBadger(DefaultBadgerConfig(dir))
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap += int64(after.HeapAlloc) - int64(before.HeapAlloc)
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(heap)/float64(b.N)/(1<<20), "heap-MiB/store")
	b.ReportAllocs()
}
