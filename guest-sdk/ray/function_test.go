package ray

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
)

// isolateRegistry gives the test an empty registry (and no Main) and puts
// the package's own back afterwards. Tests that register functions use it
// and do not run in parallel.
func isolateRegistry(t *testing.T) {
	t.Helper()
	registryMu.Lock()
	oldRegistry, oldMain, oldErr := registry, mainFn, registerErr
	registry, mainFn, registerErr = map[string]*entry{}, nil, nil
	registryMu.Unlock()
	t.Cleanup(func() {
		registryMu.Lock()
		registry, mainFn, registerErr = oldRegistry, oldMain, oldErr
		registryMu.Unlock()
	})
}

type stringer struct{}

func (stringer) String() string { return "s" }

type myInt int

func TestFits(t *testing.T) {
	type T = reflect.Type
	tf := func(v any) T { return reflect.TypeOf(v) }
	cases := []struct {
		name      string
		got, want T
		ok        bool
	}{
		{"int for int64", tf(0), reflect.TypeFor[int64](), true},
		{"int for float64", tf(0), reflect.TypeFor[float64](), true},
		{"float64 for int", tf(0.5), reflect.TypeFor[int](), true}, // JSON carries numbers alike
		{"uint8 for int32", tf(uint8(1)), reflect.TypeFor[int32](), true},
		{"named int for int", tf(myInt(1)), reflect.TypeFor[int](), true},
		{"int for int", tf(0), reflect.TypeFor[int](), true},
		{"string for string", tf(""), reflect.TypeFor[string](), true},
		{"struct for struct", tf(point{}), reflect.TypeFor[point](), true},
		{"string for int", tf(""), reflect.TypeFor[int](), false},
		{"int for string", tf(0), reflect.TypeFor[string](), false},
		{"bool for int", tf(true), reflect.TypeFor[int](), false},
		{"[]byte for string", tf([]byte{}), reflect.TypeFor[string](), false},
		{"[]int for []int64", tf([]int{}), reflect.TypeFor[[]int64](), false},
		{"struct for other struct", tf(point{}), reflect.TypeFor[struct{ X int }](), false},
		{"nil for slice", nil, reflect.TypeFor[[]int](), true},
		{"nil for pointer", nil, reflect.TypeFor[*point](), true},
		{"nil for map", nil, reflect.TypeFor[map[string]int](), true},
		{"nil for any", nil, reflect.TypeFor[any](), true},
		{"nil for int", nil, reflect.TypeFor[int](), false},
		{"nil for string", nil, reflect.TypeFor[string](), false},
		{"nil for struct", nil, reflect.TypeFor[point](), false},
		{"int for any", tf(0), reflect.TypeFor[any](), true},
		{"stringer for fmt.Stringer", tf(stringer{}), reflect.TypeFor[fmt.Stringer](), true},
		{"int for fmt.Stringer", tf(0), reflect.TypeFor[fmt.Stringer](), false},
		{"nil for fmt.Stringer", nil, reflect.TypeFor[fmt.Stringer](), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := fits(c.got, c.want); got != c.ok {
				t.Errorf("fits(%v, %v) = %v, want %v", c.got, c.want, got, c.ok)
			}
		})
	}
}

func TestEncodeArg(t *testing.T) {
	cases := []struct {
		name    string
		arg     any
		want    reflect.Type
		isRef   bool
		codec   abi.Codec
		data    string
		wantErr error
	}{
		{"int value for int64", 3, reflect.TypeFor[int64](), false, abi.CodecJSON, "3", nil},
		{"bytes value for []byte", []byte("raw"), reflect.TypeFor[[]byte](), false, abi.CodecRaw, "raw", nil},
		{"bytes value for any", []byte("raw"), reflect.TypeFor[any](), false, abi.CodecRaw, "raw", nil},
		{"nil for slice", nil, reflect.TypeFor[[]int](), false, abi.CodecJSON, "null", nil},
		{"struct value", point{X: 1}, reflect.TypeFor[point](), false, abi.CodecJSON, `{"X":1,"Y":0}`, nil},
		{"string value for int", "3", reflect.TypeFor[int](), false, 0, "", ErrBadArgument},
		{"nil for int", nil, reflect.TypeFor[int](), false, 0, "", ErrBadArgument},
		{"unencodable value for any", make(chan int), reflect.TypeFor[any](), false, 0, "", ErrBadArgument},
		{"ObjectRef[int] for int", refInt, reflect.TypeFor[int](), true, 0, "", nil},
		{"ObjectRef[int] for int64", refInt, reflect.TypeFor[int64](), true, 0, "", nil},
		{"ObjectRef[int] for any", refInt, reflect.TypeFor[any](), true, 0, "", nil},
		{"ObjectRef[[]byte] for []byte", refPut, reflect.TypeFor[[]byte](), true, 0, "", nil},
		{"ObjectRef[string] for int", ObjectRef[string]{id: refTask.Return(2)}, reflect.TypeFor[int](), false, 0, "", ErrBadArgument},
		{"ObjectRef[[]byte] for string", refPut, reflect.TypeFor[string](), false, 0, "", ErrBadArgument},
		{"ObjectRef[point] for *point", ObjectRef[point]{id: refTask.Return(2)}, reflect.TypeFor[*point](), false, 0, "", ErrBadArgument},
		{"failed ObjectRef", ObjectRef[int]{err: ErrNotInGuest}, reflect.TypeFor[int](), false, 0, "", ErrNotInGuest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := encodeArg(c.arg, c.want)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("encodeArg = %+v, %v; want %v", got, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("encodeArg: %v", err)
			}
			if got.IsRef != c.isRef {
				t.Fatalf("IsRef = %v, want %v", got.IsRef, c.isRef)
			}
			if c.isRef {
				if want := c.arg.(AnyRef).abiRef(); got.Ref != want {
					t.Errorf("Ref = %+v, want %+v", got.Ref, want)
				}
				return
			}
			if got.Value.Codec != c.codec || string(got.Value.Data) != c.data {
				t.Errorf("Value = %v %q, want %v %q", got.Value.Codec, got.Value.Data, c.codec, c.data)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	t.Run("functions sorted with arities", func(t *testing.T) {
		isolateRegistry(t)
		Func2("zeta", func(context.Context, int, string) (int, error) { return 0, nil })
		Func0("alpha", func(context.Context) (string, error) { return "", nil })
		FuncN("sum", func(context.Context, ...int) (int, error) { return 0, nil })
		Func3("three", func(context.Context, int, int, int) (int, error) { return 0, nil })
		Func1("one", func(context.Context, []byte) ([]byte, error) { return nil, nil })
		d := describe()
		want := []abi.FunctionInfo{
			{Name: "alpha", NumArgs: 0, NumReturns: 1},
			{Name: "one", NumArgs: 1, NumReturns: 1},
			{Name: "sum", NumArgs: -1, NumReturns: 1},
			{Name: "three", NumArgs: 3, NumReturns: 1},
			{Name: "zeta", NumArgs: 2, NumReturns: 1},
		}
		if d.ABI != abi.Version || d.HasMain || d.Error != "" || !reflect.DeepEqual(shapes(d.Functions), want) {
			t.Fatalf("describe() = %+v\nwant functions %+v", d, want)
		}
	})
	t.Run("empty", func(t *testing.T) {
		isolateRegistry(t)
		if d := describe(); d.ABI != abi.Version || len(d.Functions) != 0 || d.HasMain || d.Error != "" {
			t.Fatalf("describe() = %+v", d)
		}
	})
	t.Run("main", func(t *testing.T) {
		isolateRegistry(t)
		Main(func(context.Context) error { return nil })
		if d := describe(); !d.HasMain || d.Error != "" {
			t.Fatalf("describe() = %+v", d)
		}
	})

	cases := []struct {
		name      string
		register  func()
		wantError string
		wantNames []string
	}{
		{"duplicate function", func() {
			Func1("dup", func(context.Context, int) (int, error) { return 1, nil })
			Func0("dup", func(context.Context) (int, error) { return 2, nil })
		}, `ray: remote function "dup" registered twice`, []string{"dup"}},
		{"duplicate across kinds", func() {
			FuncN("dup", func(context.Context, ...int) (int, error) { return 1, nil })
			Func2("dup", func(context.Context, int, int) (int, error) { return 2, nil })
			Func0("ok", func(context.Context) (int, error) { return 3, nil })
		}, `ray: remote function "dup" registered twice`, []string{"dup", "ok"}},
		{"empty name", func() {
			Func0("", func(context.Context) (int, error) { return 0, nil })
		}, "ray: a remote function needs a name", nil},
		{"main twice", func() {
			Main(func(context.Context) error { return nil })
			Main(func(context.Context) error { return nil })
		}, "ray: Main registered twice", nil},
		{"first mistake is reported", func() {
			Func0("a", func(context.Context) (int, error) { return 0, nil })
			Func0("a", func(context.Context) (int, error) { return 0, nil })
			Func0("", func(context.Context) (int, error) { return 0, nil })
			Func0("b", func(context.Context) (int, error) { return 0, nil })
			Func0("b", func(context.Context) (int, error) { return 0, nil })
		}, `ray: remote function "a" registered twice`, []string{"a", "b"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			isolateRegistry(t)
			c.register()
			d := describe()
			if d.Error != c.wantError {
				t.Errorf("Error = %q, want %q", d.Error, c.wantError)
			}
			var names []string
			for _, f := range d.Functions {
				names = append(names, f.Name)
			}
			if !reflect.DeepEqual(names, c.wantNames) {
				t.Errorf("functions = %q, want %q", names, c.wantNames)
			}
		})
	}
}

// shapes keeps the fields of FunctionInfo that say what a function is
// (dropping the call defaults, which TestDescribeDefaults checks).
func shapes(fs []abi.FunctionInfo) []abi.FunctionInfo {
	out := make([]abi.FunctionInfo, len(fs))
	for i, f := range fs {
		out[i] = abi.FunctionInfo{Name: f.Name, NumArgs: f.NumArgs, NumReturns: f.NumReturns, Generator: f.Generator}
	}
	return out
}

// The first registration of a name wins; the duplicate is never called.
func TestDuplicateKeepsFirst(t *testing.T) {
	isolateRegistry(t)
	var called []string
	Func0("dup", func(context.Context) (int, error) { called = append(called, "first"); return 1, nil })
	Func0("dup", func(context.Context) (int, error) { called = append(called, "second"); return 2, nil })
	invoke(invocationBytes(abi.KindCall, "dup"))
	if !reflect.DeepEqual(called, []string{"first"}) {
		t.Fatalf("called %v, want [first]", called)
	}
	if d := describe(); len(d.Functions) != 1 || d.Functions[0].NumArgs != 0 {
		t.Fatalf("describe() = %+v", d)
	}
}

func TestFunctionOptions(t *testing.T) {
	isolateRegistry(t)
	f := Func1("f", func(context.Context, int) (int, error) { return 0, nil },
		NumCPUs(2), Resources(map[string]float64{"tpu": 1}))
	if f.Name() != "f" {
		t.Errorf("Name() = %q", f.Name())
	}
	g := f.Options(NumGPUs(1), Resources(map[string]float64{"mem": 4}))
	h := f.Options(NumCPUs(0))

	fr, gr, hr := f.opts.resources(), g.opts.resources(), h.opts.resources()
	if fr.CPUs != 2 || fr.GPUs != 0 || !sameCustom(fr.Custom, map[string]float64{"tpu": 1}) {
		t.Errorf("f resources = %+v", fr)
	}
	if gr.CPUs != 2 || gr.GPUs != 1 || !sameCustom(gr.Custom, map[string]float64{"tpu": 1, "mem": 4}) {
		t.Errorf("g resources = %+v", gr)
	}
	if hr.CPUs != 0 || !sameCustom(hr.Custom, map[string]float64{"tpu": 1}) {
		t.Errorf("h resources = %+v", hr)
	}
	// Options copies: g's custom resources did not leak into f.
	if len(f.opts.custom) != 1 {
		t.Errorf("f.Options changed f: %+v", f.opts.custom)
	}
	// Without NumCPUs the host's default applies.
	if r := (options{}).resources(); r.CPUs != -1 || r.GPUs != 0 || r.Custom != nil {
		t.Errorf("default resources = %+v", r)
	}
}

func sameCustom(got []abi.Custom, want map[string]float64) bool {
	if len(got) != len(want) {
		return false
	}
	for _, c := range got {
		if w, ok := want[c.Name]; !ok || w != c.Amount {
			return false
		}
	}
	return true
}

// Outside an invocation there is no task: Remote and Put fail at once with
// ErrNotInGuest instead of blocking or panicking, and so do the other calls
// that need the host.
func TestNativeCallsOutsideATask(t *testing.T) {
	isolateRegistry(t)
	f := Func1("f", func(context.Context, int) (int, error) { return 0, nil })
	ctx := context.Background()
	if r := f.Remote(1); !errors.Is(r.Err(), ErrNotInGuest) || !strings.HasPrefix(r.Err().Error(), "f.Remote: ") {
		t.Errorf("Remote outside a task: err = %v", r.Err())
	}
	if r := Put(42); !errors.Is(r.Err(), ErrNotInGuest) {
		t.Errorf("Put outside a task: err = %v", r.Err())
	}
	if _, err := Get(ctx, refInt); !errors.Is(err, ErrNotInGuest) {
		t.Errorf("Get: %v", err)
	}
	if _, err := Get(ctx, f.Remote(1)); !errors.Is(err, ErrNotInGuest) {
		t.Errorf("Get of a failed ref: %v", err)
	}
	if vs, err := GetAll[int](ctx, nil); vs != nil || err != nil {
		t.Errorf("GetAll(nil) = %v, %v", vs, err)
	}
	if _, _, err := Wait(ctx, []ObjectRef[int]{refInt}, 1, -1); !errors.Is(err, ErrNotInGuest) {
		t.Errorf("Wait: %v", err)
	}
	if err := Sleep(ctx, 1); !errors.Is(err, ErrNotInGuest) {
		t.Errorf("Sleep: %v", err)
	}
	if err := Sleep(ctx, 0); err != nil {
		t.Errorf("Sleep(0) = %v, want nil without asking the host", err)
	}
	if Cancelled(ctx) {
		t.Error("Cancelled() = true outside a guest")
	}
	if TaskID(ctx) != "" || Attempt(ctx) != 0 {
		t.Error("TaskID/Attempt of a context without a task")
	}
}

func TestWaitArgumentChecks(t *testing.T) {
	ctx := context.Background()
	two := []ObjectRef[int]{refInt, {id: refTask.Return(1)}}
	for _, c := range []struct {
		name string
		refs []ObjectRef[int]
		n    int
		want error
	}{
		{"zero", two, 0, ErrBadArgument},
		{"too many", two, 3, ErrBadArgument},
		{"duplicate", []ObjectRef[int]{refInt, refInt}, 1, ErrBadArgument},
		{"failed ref", []ObjectRef[int]{refInt, {err: ErrNotInGuest}}, 1, ErrNotInGuest},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, _, err := Wait(ctx, c.refs, c.n, 0); !errors.Is(err, c.want) {
				t.Fatalf("Wait = %v, want %v", err, c.want)
			}
		})
	}
}
