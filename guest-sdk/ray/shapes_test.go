//go:build !wasip1

package ray

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// Registrations of the generated shapes (shapes_gen.go), at their limits.
type stShape struct{ n int }

var (
	stSum8 = Func8("st.sum8", func(ctx context.Context, a, b, c, d, e, f, g, h int) (int, error) {
		return a + b + c + d + e + f + g + h, nil
	})
	stSplit8 = Func8x3("st.split8", func(ctx context.Context, a int, b string, c bool, d, e, f, g float64, h []int) (int, string, int, error) {
		return a, b, len(h), nil
	})
	stGen3 = Gen3("st.gen3", func(ctx context.Context, from, to, step int, yield func(int) error) error {
		for i := from; i < to; i += step {
			if err := yield(i); err != nil {
				return err
			}
		}
		return nil
	})
	stClass = Actor3("st.Shape", func(ctx context.Context, a, b, c int) (*stShape, error) { return &stShape{a + b + c}, nil })
	stAdd8  = Method8(stClass, "add8", func(s *stShape, ctx context.Context, a, b, c, d, e, f, g, h int) (int, error) {
		s.n += a + b + c + d + e + f + g + h
		return s.n, nil
	})
	stViews = Method0x3(stClass, "views", func(s *stShape, ctx context.Context) (int, string, []int, error) {
		return s.n, fmt.Sprint(s.n), []int{s.n}, nil
	})
	stFailing = Method2x2(stClass, "failing", func(s *stShape, ctx context.Context, a, b int) (int, int, error) {
		return 0, 0, errors.New("no")
	})
	stUpTo = GenMethod2(stClass, "up_to", func(s *stShape, ctx context.Context, by, n int, yield func(int) error) error {
		for range n {
			s.n += by
			if err := yield(s.n); err != nil {
				return err
			}
		}
		return errors.New("the end")
	})
)

func TestGeneratedShapes(t *testing.T) {
	runLocal(t, func(ctx context.Context) error {
		if v, err := Get(ctx, stSum8.Remote(1, 2, 3, 4, Put(5), 6, 7, stSum8.Remote(1, 1, 1, 1, 1, 1, 1, 1))); err != nil || v != 36 {
			return fmt.Errorf("sum8 = %d, %v; want 36", v, err)
		}
		a, b, n := stSplit8.Remote(1, "x", true, 1, 2, 3, 4, []int{1, 2})
		if v, err := GetAll(ctx, []ObjectRef[int]{a, n}); err != nil || v[0] != 1 || v[1] != 2 {
			return fmt.Errorf("split8 = %v, %v", v, err)
		}
		if s, err := Get(ctx, b); err != nil || s != "x" {
			return fmt.Errorf("split8 b = %q, %v", s, err)
		}
		if r := stSum8.Remote(1, 2, 3); !errors.Is(r.Err(), ErrBadArgument) {
			return fmt.Errorf("3 arguments for 8: %v", r.Err())
		}
		var items []int
		for ref, err := range stGen3.Remote(0, 10, 4).All(ctx) {
			if err != nil {
				return err
			}
			v, err := Get(ctx, ref)
			if err != nil {
				return err
			}
			items = append(items, v)
		}
		if fmt.Sprint(items) != "[0 4 8]" {
			return fmt.Errorf("gen3 items %v", items)
		}
		h := stClass.Remote(1, 2, 3)
		if v, err := Get(ctx, stAdd8.Remote(h, 1, 1, 1, 1, 1, 1, 1, 1)); err != nil || v != 14 {
			return fmt.Errorf("add8 = %d, %v; want 14", v, err)
		}
		n0, s0, l0 := stViews.Remote(h)
		v, err := Get(ctx, n0)
		sv, serr := Get(ctx, s0)
		lv, lerr := Get(ctx, l0)
		if err != nil || serr != nil || lerr != nil || v != 14 || sv != "14" || fmt.Sprint(lv) != "[14]" {
			return fmt.Errorf("views = %d %q %v (%v %v %v)", v, sv, lv, err, serr, lerr)
		}
		f0, f1 := stFailing.Remote(h, 1, 2)
		if _, err := Get(ctx, f0); !errors.Is(err, ErrTaskFailed) {
			return fmt.Errorf("failing method, result 0: %v", err)
		}
		if _, err := Get(ctx, f1); !errors.Is(err, ErrTaskFailed) {
			return fmt.Errorf("failing method, result 1: %v", err)
		}
		gen := stUpTo.Remote(h, 10, 2)
		var got []int
		var streamErr error
		for ref, err := range gen.All(ctx) {
			if err != nil {
				return err
			}
			v, err := Get(ctx, ref)
			if err != nil {
				streamErr = err
				break
			}
			got = append(got, v)
		}
		if fmt.Sprint(got) != "[24 34]" || !errors.Is(streamErr, ErrTaskFailed) {
			return fmt.Errorf("up_to items %v, then %v", got, streamErr)
		}
		if _, err := Get(ctx, gen.Completed()); !errors.Is(err, ErrTaskFailed) {
			return fmt.Errorf("Completed of a failed generator method: %v", err)
		}
		return nil
	})
}

func TestGeneratorsAsRefs(t *testing.T) {
	runLocal(t, func(ctx context.Context) error {
		g := stGen3.Remote(0, 3, 1)
		if r := ltAdd.Remote(g, 1); !errors.Is(r.Err(), ErrBadArgument) {
			return fmt.Errorf("a generator as an argument: %v", r.Err())
		}
		// Ready: its next item exists.
		ready, notReady, err := WaitAny(ctx, []AnyRef{g, ltAdd.Remote(1, 1)}, 2, -1)
		if err != nil || len(ready) != 2 || len(notReady) != 0 || ready[0] != AnyRef(g) {
			return fmt.Errorf("WaitAny(generator, ref) = %v, %v, %v", ready, notReady, err)
		}
		if _, _, err := WaitAny(ctx, []AnyRef{g, g}, 1, -1); !errors.Is(err, ErrBadArgument) {
			return fmt.Errorf("WaitAny with a ref twice: %v", err)
		}
		if _, _, err := WaitAny(ctx, []AnyRef{g}, 2, -1); !errors.Is(err, ErrBadArgument) {
			return fmt.Errorf("WaitAny numReturns 2 of 1: %v", err)
		}
		if r, n, err := WaitAny(ctx, nil, 0, -1); r != nil || n != nil || err != nil {
			return fmt.Errorf("WaitAny of nothing: %v %v %v", r, n, err)
		}
		for _, err := range g.All(ctx) {
			if err != nil {
				return err
			}
		}
		// At the end of its stream a generator is ready too (Next returns at once).
		if ready, _, err := WaitAny(ctx, []AnyRef{g, g.Completed()}, 2, -1); err != nil || len(ready) != 2 {
			return fmt.Errorf("WaitAny at the end of the stream: %v, %v", ready, err)
		}
		return nil
	})
}
