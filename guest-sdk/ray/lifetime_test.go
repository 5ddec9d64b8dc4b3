package ray

import (
	"errors"
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
)

// TestLifetimeOptions: Detached and MaxConcurrency travel on an actor's
// creation only, and MaxConcurrency is checked.
func TestLifetimeOptions(t *testing.T) {
	apply := func(kind abi.Kind, opts ...Option) (abi.SubmitRequest, error) {
		o := options{}.with(opts)
		req := abi.SubmitRequest{Function: "f", NumReturns: 1, Kind: kind}
		o.apply(&req)
		var back abi.SubmitRequest
		if err := back.Decode(req.Encode(nil)); err != nil {
			return back, err
		}
		return back, o.err
	}
	cases := []struct {
		name     string
		kind     abi.Kind
		opts     []Option
		detached bool
		conc     uint32
		bad      bool
	}{
		{"detached creation", abi.KindActorCreate, []Option{Detached()}, true, 0, false},
		{"a call ignores it", abi.KindCall, []Option{Detached(), MaxConcurrency(4)}, false, 0, false},
		{"max concurrency 8", abi.KindActorCreate, []Option{MaxConcurrency(8)}, false, 8, false},
		{"max concurrency 1 is the default", abi.KindActorCreate, []Option{MaxConcurrency(1)}, false, 0, false},
		{"max concurrency 0", abi.KindActorCreate, []Option{MaxConcurrency(0)}, false, 0, true},
		{"max concurrency 1025", abi.KindActorCreate, []Option{MaxConcurrency(1025)}, false, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := apply(tc.kind, tc.opts...)
			if tc.bad {
				if !errors.Is(err, ErrBadArgument) {
					t.Fatalf("err %v, want ErrBadArgument", err)
				}
				return
			}
			if err != nil || got.Detached != tc.detached || got.MaxConcurrency != tc.conc {
				t.Fatalf("detached %v, max concurrency %d, err %v", got.Detached, got.MaxConcurrency, err)
			}
		})
	}
}
