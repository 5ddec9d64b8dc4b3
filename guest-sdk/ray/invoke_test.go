package ray

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// What these tests can observe natively
//
// invoke sends its Result through hostCall, which in a native build outside
// RunLocal always fails with ErrNotInGuest (local_other.go). That decides
// the statuses:
//
//   - sendError ignores hostCall's error and returns the status it was given,
//     so every failure path returns its real status: StatusBadRequest for a
//     bad invocation or argument, StatusError for an error or a panic.
//   - sendResult, on hostCall's failure, falls back to
//     sendError(StatusError, …"sending the result"…). So a function that
//     SUCCEEDS yields StatusError natively, never StatusOK. In a guest the
//     same path yields StatusOK. The success tests therefore check that the
//     function ran with the right arguments and context, and that the status
//     is StatusError (the send failed), not StatusBadRequest.
//
// The Result bytes themselves (the panic message, the error text) are handed
// to hostCall and dropped; natively they cannot be observed.

var invokeTask = ids.TaskID{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 1, 2, 3, 4, 5, 6, 7, 8}

const invokeAttempt = 2

func invocationBytes(kind abi.Kind, fn string, args ...abi.Value) []byte {
	inv := abi.Invocation{Kind: kind, Task: invokeTask, Attempt: invokeAttempt, Owner: "10.0.0.9:7000", Function: fn, Args: args}
	return inv.Encode(nil)
}

func jsonArg(s string) abi.Value { return abi.Value{Codec: abi.CodecJSON, Data: []byte(s)} }
func rawArg(s string) abi.Value  { return abi.Value{Codec: abi.CodecRaw, Data: []byte(s)} }

// invokeSafely runs invoke and fails the test if a panic escapes it.
func invokeSafely(t *testing.T, input []byte) (status abi.Status) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("a panic escaped invoke: %v", r)
		}
	}()
	status = invoke(input)
	if currentTask() != nil {
		t.Error("invoke left a current task behind")
	}
	return status
}

// calls records which registered functions ran.
type calls struct{ names []string }

func (c *calls) add(name string) { c.names = append(c.names, name) }

func registerTestFunctions(c *calls) {
	Func0("zero", func(context.Context) (int, error) { c.add("zero"); return 0, nil })
	Func1("square", func(_ context.Context, x int) (int, error) { c.add("square"); return x * x, nil })
	Func2("concat", func(_ context.Context, a string, b []byte) (string, error) {
		c.add("concat")
		return a + string(b), nil
	})
	Func3("point", func(_ context.Context, x, y int, tag string) (point, error) {
		c.add("point")
		return point{x, y, tag}, nil
	})
	FuncN("sum", func(_ context.Context, xs ...int) (int, error) {
		c.add("sum")
		s := 0
		for _, x := range xs {
			s += x
		}
		return s, nil
	})
	Func1("fail", func(_ context.Context, msg string) (int, error) {
		c.add("fail")
		return 0, errors.New(msg)
	})
	Func0("cancelled", func(context.Context) (int, error) {
		c.add("cancelled")
		return 0, fmt.Errorf("stopping: %w", ErrTaskCancelled)
	})
	Func0("badresult", func(context.Context) (float64, error) {
		c.add("badresult")
		return math.NaN(), nil // does not encode as JSON
	})
	Func1("panic", func(_ context.Context, v string) (int, error) {
		c.add("panic")
		switch v {
		case "nil":
			panic(nil)
		case "error":
			panic(errors.New("an error value"))
		case "index":
			var s []int
			return s[3], nil
		case "nil map":
			var m map[string]int
			m["x"] = 1
		}
		panic(v)
	})
}

func TestInvokeStatuses(t *testing.T) {
	isolateRegistry(t)
	var c calls
	registerTestFunctions(&c)

	valid := invocationBytes(abi.KindCall, "square", jsonArg("3"))
	cases := []struct {
		name   string
		input  []byte
		status abi.Status
		ran    string // the function that must have run, "" for none
	}{
		// The invocation does not decode.
		{"nil input", nil, abi.StatusBadRequest, ""},
		{"garbage", []byte("garbage"), abi.StatusBadRequest, ""},
		{"truncated", valid[:len(valid)-1], abi.StatusBadRequest, ""},
		{"trailing byte", append(append([]byte(nil), valid...), 0), abi.StatusBadRequest, ""},
		{"kind 0", invocationBytes(0, "square", jsonArg("3")), abi.StatusBadRequest, ""},
		{"kind 9", invocationBytes(9, "square", jsonArg("3")), abi.StatusBadRequest, ""},
		{"invalid codec", invocationBytes(abi.KindCall, "square", abi.Value{Codec: 3, Data: []byte("3")}), abi.StatusBadRequest, ""},

		// Unknown function.
		{"unknown function", invocationBytes(abi.KindCall, "nope"), abi.StatusBadRequest, ""},
		{"empty function name", invocationBytes(abi.KindCall, ""), abi.StatusBadRequest, ""},

		// Wrong number of arguments.
		{"Func1 without args", invocationBytes(abi.KindCall, "square"), abi.StatusBadRequest, ""},
		{"Func1 with 2 args", invocationBytes(abi.KindCall, "square", jsonArg("1"), jsonArg("2")), abi.StatusBadRequest, ""},
		{"Func0 with an arg", invocationBytes(abi.KindCall, "zero", jsonArg("1")), abi.StatusBadRequest, ""},
		{"Func3 with 2 args", invocationBytes(abi.KindCall, "point", jsonArg("1"), jsonArg("2")), abi.StatusBadRequest, ""},

		// Arguments that do not decode: the caller's mistake, the function
		// never runs.
		{"raw into int", invocationBytes(abi.KindCall, "square", rawArg("3")), abi.StatusBadRequest, ""},
		{"string into int", invocationBytes(abi.KindCall, "square", jsonArg(`"3"`)), abi.StatusBadRequest, ""},
		{"bad json", invocationBytes(abi.KindCall, "square", jsonArg(`{`)), abi.StatusBadRequest, ""},
		{"error value as arg", invocationBytes(abi.KindCall, "square",
			(&abi.TaskError{Kind: abi.ErrorApplication}).Encode()), abi.StatusBadRequest, ""},
		{"third arg bad", invocationBytes(abi.KindCall, "point", jsonArg("1"), jsonArg("2"), jsonArg("3")), abi.StatusBadRequest, ""},
		{"FuncN second arg bad", invocationBytes(abi.KindCall, "sum", jsonArg("1"), jsonArg("true"), jsonArg("3")), abi.StatusBadRequest, ""},

		// Failures of the function itself.
		{"function error", invocationBytes(abi.KindCall, "fail", jsonArg(`"boom"`)), abi.StatusError, "fail"},
		{"function cancelled", invocationBytes(abi.KindCall, "cancelled"), abi.StatusError, "cancelled"},
		{"result does not encode", invocationBytes(abi.KindCall, "badresult"), abi.StatusError, "badresult"},
		{"panic string", invocationBytes(abi.KindCall, "panic", jsonArg(`"oops"`)), abi.StatusError, "panic"},
		{"panic error", invocationBytes(abi.KindCall, "panic", jsonArg(`"error"`)), abi.StatusError, "panic"},
		{"panic nil", invocationBytes(abi.KindCall, "panic", jsonArg(`"nil"`)), abi.StatusError, "panic"},
		{"panic index out of range", invocationBytes(abi.KindCall, "panic", jsonArg(`"index"`)), abi.StatusError, "panic"},
		{"panic nil map", invocationBytes(abi.KindCall, "panic", jsonArg(`"nil map"`)), abi.StatusError, "panic"},

		// Successes: natively the result cannot be sent, so StatusError
		// (see the comment at the top of the file).
		{"Func0 ok", invocationBytes(abi.KindCall, "zero"), abi.StatusError, "zero"},
		{"Func1 ok", valid, abi.StatusError, "square"},
		{"Func2 raw into string and []byte", invocationBytes(abi.KindCall, "concat", rawArg("a"), rawArg("b")), abi.StatusError, "concat"},
		{"Func3 ok", invocationBytes(abi.KindCall, "point", jsonArg("1"), jsonArg("2"), jsonArg(`"p"`)), abi.StatusError, "point"},
		{"FuncN no args", invocationBytes(abi.KindCall, "sum"), abi.StatusError, "sum"},
		{"FuncN five args", invocationBytes(abi.KindCall, "sum", jsonArg("1"), jsonArg("2"), jsonArg("3"), jsonArg("4"), jsonArg("5")), abi.StatusError, "sum"},
		{"describe", invocationBytes(abi.KindDescribe, ""), abi.StatusError, ""},

		// Main.
		{"main without ray.Main", invocationBytes(abi.KindMain, ""), abi.StatusBadRequest, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.names = nil
			if got := invokeSafely(t, tc.input); got != tc.status {
				t.Errorf("invoke = %d, want %d", got, tc.status)
			}
			var want []string
			if tc.ran != "" {
				want = []string{tc.ran}
			}
			if !reflect.DeepEqual(c.names, want) {
				t.Errorf("functions run: %v, want %v", c.names, want)
			}
		})
	}
}

// The function receives the decoded arguments and a context that knows the
// task; the task is current while the function runs and not afterwards.
func TestInvokeArgumentsAndContext(t *testing.T) {
	isolateRegistry(t)
	type seen struct {
		a        string
		b        []byte
		p        point
		xs       []int
		taskID   string
		attempt  int
		current  bool
		ctxValue bool
	}
	var got seen
	record := func(ctx context.Context) {
		got.taskID, got.attempt = TaskID(ctx), Attempt(ctx)
		ct := currentTask()
		got.current = ct != nil && ct.id == invokeTask && ct.owner == "10.0.0.9:7000" && ct.fn != ""
		got.ctxValue = ctx.Value(taskKey{}) == ct
	}
	Func3("three", func(ctx context.Context, a string, b []byte, p point) (int, error) {
		got.a, got.b, got.p = a, b, p
		record(ctx)
		return 0, nil
	})
	FuncN("many", func(ctx context.Context, xs ...int) (int, error) {
		got.xs = xs
		record(ctx)
		return 0, nil
	})

	payload := []byte{0, 1, 2, 0xff}
	in := invocationBytes(abi.KindCall, "three", rawArg("héllo"), abi.Value{Codec: abi.CodecRaw, Data: payload},
		jsonArg(`{"X":1,"Y":2,"tag":"t"}`))
	if s := invokeSafely(t, in); s != abi.StatusError { // natively: the send fails
		t.Fatalf("status %d", s)
	}
	want := seen{a: "héllo", b: payload, p: point{1, 2, "t"}, taskID: invokeTask.String(), attempt: invokeAttempt, current: true, ctxValue: true}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("function saw %+v\n want %+v", got, want)
	}

	got = seen{}
	in = invocationBytes(abi.KindCall, "many", jsonArg("1"), jsonArg("2"), jsonArg("-3"))
	if s := invokeSafely(t, in); s != abi.StatusError {
		t.Fatalf("status %d", s)
	}
	if !reflect.DeepEqual(got.xs, []int{1, 2, -3}) || !got.current {
		t.Fatalf("FuncN saw %+v", got)
	}
}

func TestInvokeMain(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		pan  bool
	}{
		{"ok", nil, false},
		{"error", errors.New("driver failed"), false},
		{"panic", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isolateRegistry(t)
			ran := false
			Main(func(ctx context.Context) error {
				ran = true
				if TaskID(ctx) != invokeTask.String() {
					t.Errorf("TaskID(ctx) = %q", TaskID(ctx))
				}
				if tc.pan {
					panic("driver panicked")
				}
				return tc.err
			})
			// Every outcome is StatusError natively: the error and the panic
			// by design, success because the result cannot be sent.
			if s := invokeSafely(t, invocationBytes(abi.KindMain, "ignored")); s != abi.StatusError {
				t.Errorf("status %d, want %d", s, abi.StatusError)
			}
			if !ran {
				t.Error("Main did not run")
			}
		})
	}
}

// Remote and Put inside a running task check their arguments natively; only
// the final host call fails (ErrNotInGuest).
func TestRemoteInsideATask(t *testing.T) {
	isolateRegistry(t)
	target := Func2("target", func(context.Context, int64, []byte) (int, error) { return 0, nil })
	variadic := FuncN("variadic", func(context.Context, ...string) (int, error) { return 0, nil })
	results := map[string]error{}
	Func0("driver", func(ctx context.Context) (int, error) {
		results["ok value args"] = target.Remote(3, []byte("x")).Err()
		results["ok ref args"] = target.Remote(refInt, refPut).Err()
		results["ok nil slice"] = target.Remote(1, nil).Err()
		results["too few"] = target.Remote(1).Err()
		results["too many"] = target.Remote(1, []byte{}, 3).Err()
		results["wrong value type"] = target.Remote("3", []byte{}).Err()
		results["wrong ref type"] = target.Remote(ObjectRef[string]{id: refTask.Return(1)}, []byte{}).Err()
		results["failed ref"] = target.Remote(ObjectRef[int64]{err: errors.New("earlier failure")}, []byte{}).Err()
		results["negative cpus"] = target.Options(NumCPUs(-2)).Remote(1, []byte{}).Err()
		results["NaN gpus"] = target.Options(NumGPUs(math.NaN())).Remote(1, []byte{}).Err()
		results["empty resource name"] = target.Options(Resources(map[string]float64{"": 1})).Remote(1, []byte{}).Err()
		results["variadic ok"] = variadic.Remote("a", "b", "c").Err()
		results["variadic wrong type"] = variadic.Remote("a", 2).Err()
		results["put"] = Put(point{}).Err()
		results["put unencodable"] = Put(make(chan int)).Err()
		return 0, nil
	})
	invokeSafely(t, invocationBytes(abi.KindCall, "driver"))

	want := map[string]error{
		"ok value args":       ErrNotInGuest,
		"ok ref args":         ErrNotInGuest,
		"ok nil slice":        ErrNotInGuest,
		"too few":             ErrBadArgument,
		"too many":            ErrBadArgument,
		"wrong value type":    ErrBadArgument,
		"wrong ref type":      ErrBadArgument,
		"failed ref":          nil, // checked below
		"negative cpus":       ErrBadArgument,
		"NaN gpus":            ErrBadArgument,
		"empty resource name": ErrBadArgument,
		"variadic ok":         ErrNotInGuest,
		"variadic wrong type": ErrBadArgument,
		"put":                 ErrNotInGuest,
		"put unencodable":     ErrBadArgument,
	}
	for name, w := range want {
		err := results[name]
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if w != nil && !errors.Is(err, w) {
			t.Errorf("%s: %v, want %v", name, err, w)
		}
	}
	if err := results["failed ref"]; err == nil || errors.Is(err, ErrNotInGuest) ||
		err.Error() != "target.Remote: argument 1: earlier failure" {
		t.Errorf("failed ref: %v", err)
	}
}
