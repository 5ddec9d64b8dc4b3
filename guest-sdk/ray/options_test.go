package ray

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/rayhost/rayhost/internal/abi"
)

// submitFor is the SubmitRequest submit would send for opts (without the
// task ID and arguments), and whether the host would accept its encoding.
func submitFor(opts ...Option) (abi.SubmitRequest, error) {
	req := abi.SubmitRequest{Function: "f", NumReturns: 1}
	options{}.with(opts).apply(&req)
	var back abi.SubmitRequest
	return req, back.Decode(req.Encode(nil))
}

func TestOptionsApply(t *testing.T) {
	cases := []struct {
		name string
		opts []Option
		want func(r abi.SubmitRequest) bool
	}{
		{"defaults", nil, func(r abi.SubmitRequest) bool {
			return r.MaxRetries == 3 && r.Retry == abi.RetryNone && r.RetryOn == nil && !r.NoEvents &&
				r.Backpressure == 0 && r.Resources.CPUs == -1
		}},
		{"max retries 0", []Option{MaxRetries(0)}, func(r abi.SubmitRequest) bool { return r.MaxRetries == 0 }},
		{"max retries unlimited", []Option{MaxRetries(-1)}, func(r abi.SubmitRequest) bool { return r.MaxRetries == -1 }},
		{"retry all", []Option{RetryExceptions()}, func(r abi.SubmitRequest) bool {
			return r.Retry == abi.RetryAll && r.RetryOn == nil
		}},
		{"retry listed", []Option{RetryExceptions("panic", "E42")}, func(r abi.SubmitRequest) bool {
			return r.Retry == abi.RetryListed && reflect.DeepEqual(r.RetryOn, []string{"panic", "E42"})
		}},
		{"retry listed then all", []Option{RetryExceptions("x"), RetryExceptions()}, func(r abi.SubmitRequest) bool {
			return r.Retry == abi.RetryAll && r.RetryOn == nil
		}},
		{"events off", []Option{TaskEvents(false)}, func(r abi.SubmitRequest) bool { return r.NoEvents }},
		{"events back on", []Option{TaskEvents(false), TaskEvents(true)}, func(r abi.SubmitRequest) bool { return !r.NoEvents }},
		{"backpressure", []Option{Backpressure(8)}, func(r abi.SubmitRequest) bool { return r.Backpressure == 8 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := submitFor(c.opts...)
			if err != nil {
				t.Fatalf("the host would reject %+v: %v", req, err)
			}
			if !c.want(req) {
				t.Fatalf("unexpected request %+v", req)
			}
		})
	}
}

// Invalid options fail the call at Remote, with ErrBadArgument, as Ray's
// options raise: negative counts other than -1, negative limits, and
// resource amounts finer than 0.0001 (which would round to nothing: a
// task asking for 1e-7 GPUs ran on a host without one).
func TestInvalidOptions(t *testing.T) {
	for name, opts := range map[string][]Option{
		"MaxRetries(-5)":      {MaxRetries(-5)},
		"MaxRestarts(-2)":     {MaxRestarts(-2)},
		"MaxTaskRetries(-9)":  {MaxTaskRetries(-9)},
		"Backpressure(-3)":    {Backpressure(-3)},
		"MemoryLimit(-1)":     {MemoryLimit(-1)},
		"Timeout(-1s)":        {Timeout(-time.Second)},
		"NumCPUs(1e-7)":       {NumCPUs(1e-7)},
		"NumGPUs(1e-7)":       {NumGPUs(1e-7)},
		"NumCPUs(-2)":         {NumCPUs(-2)},
		"custom 0.00001":      {Resources(map[string]float64{"disk": 0.00001})},
		"first error kept":    {MaxRetries(-5), MaxRetries(2)},
		"NaN GPUs":            {NumGPUs(math.NaN())},
		"infinite custom":     {Resources(map[string]float64{"disk": math.Inf(1)})},
		"negative fractional": {NumGPUs(-0.5)},
	} {
		t.Run(name, func(t *testing.T) {
			o := options{}.with(opts)
			var req abi.SubmitRequest
			o.apply(&req)
			if o.err == nil && validResources(req.Resources) {
				t.Fatalf("accepted: %+v", req)
			}
			if o.err != nil && !errors.Is(o.err, ErrBadArgument) {
				t.Fatalf("error %v is not ErrBadArgument", o.err)
			}
		})
	}
	for name, opts := range map[string][]Option{
		"MaxRetries(-1)":    {MaxRetries(-1)},
		"MaxRestarts(-1)":   {MaxRestarts(-1)},
		"NumCPUs(0)":        {NumCPUs(0)},
		"NumCPUs(0.0001)":   {NumCPUs(0.0001)},
		"NumGPUs(0.25)":     {NumGPUs(0.25)},
		"custom 0":          {Resources(map[string]float64{"disk": 0})},
		"Timeout(0)":        {Timeout(0)},
		"Backpressure(0)":   {Backpressure(0)},
		"MemoryLimit(64Ki)": {MemoryLimit(64 << 10)},
	} {
		t.Run("valid "+name, func(t *testing.T) {
			o := options{}.with(opts)
			var req abi.SubmitRequest
			o.apply(&req)
			if o.err != nil || !validResources(req.Resources) {
				t.Fatalf("refused: %v %+v", o.err, req)
			}
		})
	}
}

// RetryExceptions copies its kinds: the caller may reuse its slice.
func TestRetryExceptionsCopies(t *testing.T) {
	kinds := []string{"a", "b"}
	o := options{}.with([]Option{RetryExceptions(kinds...)})
	kinds[0] = "changed"
	if o.retryOn[0] != "a" {
		t.Fatalf("retryOn = %v", o.retryOn)
	}
}

// BUG (reported): MaxRetries(n) converts n to int32 without an upper bound,
// and the host rejects more than 1<<30 retries. A large n (a natural way to
// say "many") makes every submission fail as malformed; 1<<31 even wraps to
// a negative number. The test asserts that what MaxRetries produces is always
// accepted, and skips while the bug is there.
func TestMaxRetriesLargeValues(t *testing.T) {
	for _, n := range []int{1 << 30, 1<<30 + 1, math.MaxInt32, 1 << 31, 1 << 40} {
		req, err := submitFor(MaxRetries(n))
		if err != nil {
			t.Fatalf("MaxRetries(%d) gives MaxRetries %d, which the host rejects: %v", n, req.MaxRetries, err)
		}
		if req.MaxRetries < 0 {
			t.Fatalf("MaxRetries(%d) wrapped to %d (unlimited)", n, req.MaxRetries)
		}
	}
}

func TestWithCode(t *testing.T) {
	base := errors.New("quota exceeded")
	err := WithCode("E_QUOTA", base)
	if err.Error() != "quota exceeded" || !errors.Is(err, base) {
		t.Fatalf("WithCode: %q, Is(base) = %v", err, errors.Is(err, base))
	}
	var coded interface{ ErrorCode() string }
	if !errors.As(fmt.Errorf("wrapped: %w", err), &coded) || coded.ErrorCode() != "E_QUOTA" {
		t.Fatal("the code is not reachable through wrapping")
	}
	// A coded error is still classified by what it wraps.
	if !errors.Is(WithCode("c", ErrTaskCancelled), ErrTaskCancelled) {
		t.Error("WithCode hides ErrTaskCancelled")
	}
}

// The code travels in the TaskError the caller decodes.
func TestTaskErrorCodeDecodes(t *testing.T) {
	v := (&abi.TaskError{Kind: abi.ErrorApplication, Message: "m", Code: "E1"}).Encode()
	_, err := decodeValue[int](v)
	var te *TaskError
	if !errors.As(err, &te) || te.Code != "E1" {
		t.Fatalf("decoded %#v", err)
	}
}

// Generators and functions with several results, run natively: arguments
// are checked as for other functions; yield reports ErrNotInGuest (no host
// takes the item), and success ends in StatusError because the result cannot
// be sent (see invoke_test.go).
func TestInvokeGeneratorsAndMulti(t *testing.T) {
	isolateRegistry(t)
	var yieldErrs []error
	var ran []string
	Gen0("ticks", func(ctx context.Context, yield func(int) error) error {
		ran = append(ran, "ticks")
		err := yield(1)
		yieldErrs = append(yieldErrs, err)
		return err
	})
	Gen1("upto", func(ctx context.Context, n int, yield func(string) error) error {
		ran = append(ran, "upto")
		return nil
	})
	Gen0("badyield", func(ctx context.Context, yield func(chan int) error) error {
		ran = append(ran, "badyield")
		err := yield(make(chan int))
		yieldErrs = append(yieldErrs, err)
		return err
	})
	Func0x2("two", func(context.Context) (int, string, error) { ran = append(ran, "two"); return 1, "a", nil })
	Func1x2("twoarg", func(_ context.Context, x int) ([]byte, int, error) { ran = append(ran, "twoarg"); return nil, x, nil })
	Func0x3("three", func(context.Context) (int, int, int, error) { ran = append(ran, "three"); return 0, 0, 0, nil })
	Func1x3("threearg", func(_ context.Context, s string) (int, int, float64, error) {
		ran = append(ran, "threearg")
		return 0, 0, math.NaN(), nil // the third result does not encode
	})

	d := describe()
	want := []abi.FunctionInfo{
		{Name: "badyield", NumArgs: 0, NumReturns: 0, Generator: true},
		{Name: "three", NumArgs: 0, NumReturns: 3},
		{Name: "threearg", NumArgs: 1, NumReturns: 3},
		{Name: "ticks", NumArgs: 0, NumReturns: 0, Generator: true},
		{Name: "two", NumArgs: 0, NumReturns: 2},
		{Name: "twoarg", NumArgs: 1, NumReturns: 2},
		{Name: "upto", NumArgs: 1, NumReturns: 0, Generator: true},
	}
	if !reflect.DeepEqual(shapes(d.Functions), want) || d.Error != "" {
		t.Fatalf("describe() = %+v\nwant %+v", d, want)
	}

	cases := []struct {
		name   string
		in     []byte
		status abi.Status
		ran    bool
	}{
		{"generator yields natively", invocationBytes(abi.KindCall, "ticks"), abi.StatusError, true},
		{"generator bad arg", invocationBytes(abi.KindCall, "upto", jsonArg(`"x"`)), abi.StatusBadRequest, false},
		{"generator wrong arg count", invocationBytes(abi.KindCall, "upto"), abi.StatusBadRequest, false},
		{"generator ok", invocationBytes(abi.KindCall, "upto", jsonArg("3")), abi.StatusError, true},
		{"generator unencodable item", invocationBytes(abi.KindCall, "badyield"), abi.StatusError, true},
		{"two results", invocationBytes(abi.KindCall, "two"), abi.StatusError, true},
		{"two results bad arg", invocationBytes(abi.KindCall, "twoarg", rawArg("1")), abi.StatusBadRequest, false},
		{"three results", invocationBytes(abi.KindCall, "three"), abi.StatusError, true},
		{"three results unencodable", invocationBytes(abi.KindCall, "threearg", jsonArg(`"s"`)), abi.StatusError, true},
		{"three results wrong count", invocationBytes(abi.KindCall, "threearg"), abi.StatusBadRequest, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ran = nil
			if s := invokeSafely(t, c.in); s != c.status {
				t.Errorf("status %d, want %d", s, c.status)
			}
			if (len(ran) == 1) != c.ran {
				t.Errorf("ran %v, want ran=%v", ran, c.ran)
			}
		})
	}
	if len(yieldErrs) != 2 || !errors.Is(yieldErrs[0], ErrNotInGuest) || !errors.Is(yieldErrs[1], ErrBadArgument) {
		t.Errorf("yield errors = %v; want [ErrNotInGuest ErrBadArgument]", yieldErrs)
	}
}

// Outside a task, generator and multi-result Remote calls fail at once.
func TestGeneratorAndMultiRemoteNative(t *testing.T) {
	isolateRegistry(t)
	g := Gen0("g", func(ctx context.Context, yield func(int) error) error { return nil })
	ctx := context.Background()
	gen := g.Remote()
	if _, err := gen.Next(ctx); !errors.Is(err, ErrNotInGuest) {
		t.Errorf("Next: %v", err)
	}
	if r := gen.NextRef(); !errors.Is(r.Err(), ErrNotInGuest) {
		t.Errorf("NextRef().Err() = %v", r.Err())
	}
	for ref, err := range gen.All(ctx) {
		if !errors.Is(err, ErrNotInGuest) {
			t.Errorf("All yielded %v, %v", ref, err)
		}
	}
	two := Func0x2("two", func(context.Context) (int, int, error) { return 0, 0, nil })
	a, b := two.Options(NumCPUs(1)).Remote()
	if !errors.Is(a.Err(), ErrNotInGuest) || !errors.Is(b.Err(), ErrNotInGuest) {
		t.Errorf("Func0x2 Remote: %v, %v", a.Err(), b.Err())
	}
	three := Func0x3("three", func(context.Context) (int, int, int, error) { return 0, 0, 0, nil })
	x, y, z := three.Options().Remote()
	if !errors.Is(x.Err(), ErrNotInGuest) || !errors.Is(y.Err(), ErrNotInGuest) || !errors.Is(z.Err(), ErrNotInGuest) {
		t.Errorf("Func0x3 Remote: %v %v %v", x.Err(), y.Err(), z.Err())
	}
	if err := Cancel(refInt, true, true); !errors.Is(err, ErrNotInGuest) {
		t.Errorf("Cancel: %v", err)
	}
	if err := Cancel(ObjectRef[int]{err: ErrBadArgument}, false, false); !errors.Is(err, ErrBadArgument) {
		t.Errorf("Cancel of a failed ref: %v", err)
	}
}

// describe reports the options given at registration as the defaults a
// client's call starts from.
func TestDescribeDefaults(t *testing.T) {
	isolateRegistry(t)
	Func0("plain", func(context.Context) (int, error) { return 0, nil })
	Func0("tuned", func(context.Context) (int, error) { return 0, nil },
		NumCPUs(0.5), NumGPUs(1), Resources(map[string]float64{"tpu": 2}), MaxRetries(0),
		RetryExceptions("E1"), TaskEvents(false))
	Gen0("gen", func(context.Context, func(int) error) error { return nil }, Backpressure(4))
	byName := map[string]abi.CallOptions{}
	for _, f := range describe().Functions {
		byName[f.Name] = f.Defaults
	}
	if p := byName["plain"]; p.Resources.CPUs != -1 || p.MaxRetries != 3 || p.Retry != abi.RetryNone || p.NoEvents {
		t.Errorf("plain defaults = %+v", p)
	}
	tu := byName["tuned"]
	if tu.Resources.CPUs != 0.5 || tu.Resources.GPUs != 1 || !sameCustom(tu.Resources.Custom, map[string]float64{"tpu": 2}) ||
		tu.MaxRetries != 0 || tu.Retry != abi.RetryListed || !reflect.DeepEqual(tu.RetryOn, []string{"E1"}) || !tu.NoEvents {
		t.Errorf("tuned defaults = %+v", tu)
	}
	if g := byName["gen"]; g.Backpressure != 4 {
		t.Errorf("gen defaults = %+v", g)
	}
}

// BUG (reported): invoke answers KindDescribe with json.Marshal(describe()),
// ignoring the error ("plain data always marshals"). Since describe carries
// the registration defaults, a function registered with a non-finite
// resource amount (NumCPUs(math.Inf(1)), NumGPUs(math.NaN()), …) makes the
// marshal fail and the module describe itself with an empty value. The test
// asserts that describe() always marshals, and skips while the bug is there.
func TestDescribeAlwaysMarshals(t *testing.T) {
	for name, opt := range map[string]Option{
		"NumCPUs(+Inf)":   NumCPUs(math.Inf(1)),
		"NumGPUs(NaN)":    NumGPUs(math.NaN()),
		"Resources(-Inf)": Resources(map[string]float64{"x": math.Inf(-1)}),
	} {
		t.Run(name, func(t *testing.T) {
			isolateRegistry(t)
			Func0("f", func(context.Context) (int, error) { return 0, nil }, opt)
			Func0("g", func(context.Context) (int, error) { return 0, nil })
			if _, err := json.Marshal(describe()); err != nil {
				t.Fatalf("a function registered with %s makes the description unmarshalable: %v", name, err)
			}
		})
	}
}
