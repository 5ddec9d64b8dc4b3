package owner

import (
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// A generator's completion object (ids.TaskID.Completion, the SDK's
// ObjectRefGenerator.Completed) is sealed after its stream's end: null
// when the generator returned, its failure otherwise, cancelled once it
// was cancelled; until then it is not ready.
func TestGeneratorCompletion(t *testing.T) {
	f := newFixture(t, nil)
	t.Run("returned", func(t *testing.T) {
		id, _ := f.submit(t, "ticks", nil, 2, 0)
		v := f.value(t, id.Completion())
		if v.Codec != abi.CodecJSON || string(v.Data) != "null" {
			t.Fatalf("completion = %d %q, want null", v.Codec, v.Data)
		}
		if end := f.failure(t, id.Return(2)); end.Kind != abi.ErrorEndOfStream {
			t.Fatalf("item 2 = %+v, want the end of the stream", end)
		}
	})
	t.Run("failed", func(t *testing.T) {
		id, _ := f.submit(t, "broken_stream", nil)
		if te := f.failure(t, id.Completion()); te.Kind != abi.ErrorApplication {
			t.Fatalf("completion = %+v, want the generator's application error", te)
		}
	})
	t.Run("cancelled while it runs", func(t *testing.T) {
		id, _ := f.submit(t, "first_then_wait", nil, tenMinutes)
		f.value(t, id.Return(0))
		// Timeout 0 only looks (and reports the timeout as an error).
		if ready, err := f.api.WaitReady(hangCtx(t), []ids.ObjectID{id.Completion()}, 1, false, 0); len(ready) != 1 || ready[0] {
			t.Fatalf("completion of a running generator: ready %v (%v), want [false]", ready, err)
		}
		if err := f.api.Cancel(id.Return(0), false, false); err != nil {
			t.Fatal(err)
		}
		if te := f.failure(t, id.Completion()); te.Kind != abi.ErrorCancelled {
			t.Fatalf("completion = %+v, want cancelled", te)
		}
	})
}
