package abi

import (
	"encoding/hex"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
)

// TestGoldenEncodings pins the wire format: the host and guests built at
// different times must agree on it, so a change here is an ABI change.
func TestGoldenEncodings(t *testing.T) {
	taskHex := "0102030405060708090a0b0c0d0e0f10"
	task2Hex := "14c6dfc4513da48055473063c1d6122a" // testTask.Child(7)
	zeroTask := strings.Repeat("00", 16)
	// noActor is the actor section of a SubmitRequest that is a plain call:
	// kind 0, no actor, max restarts 0, max task retries 0, no name, no
	// namespace.
	noActor := "00" + zeroTask + "00" + "00" + "00" + "00"
	cases := []struct {
		name string
		msg  message
		want string // hex
	}{
		{"Invocation", &Invocation{Kind: KindCall, Task: testTask, Attempt: 2, Owner: "h:1", Function: "f",
			Args: []Value{{Codec: CodecRaw, Data: []byte("ab")}}},
			"01" + taskHex + "02" + "03683a31" + "0166" + "01" + "01026162" + zeroTask},
		{"Invocation actor call", &Invocation{Kind: KindActorCall, Task: testTask, Function: "C.m", Actor: testTask2},
			"05" + taskHex + "00" + "00" + "03432e6d" + "00" + task2Hex},
		{"Invocation actor create", &Invocation{Kind: KindActorCreate, Task: testTask2, Attempt: 1, Owner: "o", Function: "C",
			Args: []Value{{Codec: CodecJSON, Data: []byte("7")}}, Actor: testTask2},
			"04" + task2Hex + "01" + "016f" + "0143" + "01" + "000137" + task2Hex},
		{"SubmitRequest", &SubmitRequest{Task: testTask, Function: "f", NumReturns: 1,
			Resources: Resources{CPUs: -1, GPUs: 0, Custom: []Custom{{Name: "x", Amount: 0.5}}},
			Args: []Arg{
				{Value: Value{Codec: CodecJSON, Data: []byte("1")}},
				{IsRef: true, Ref: Ref{ID: testRet0}},
			}},
			taskHex + "0166" + "01" + "000000000000f0bf" + "0000000000000000" +
				"01" + "0178" + "000000000000e03f" +
				"00" + "00" + "00" + "00" + "00" + // max retries, retry mode, retry-on, flags, backpressure
				"00" + "00" + // limits: memory pages, timeout
				"00" + "00" + // grants: mounts, env
				noActor +
				"02" + "00" + "000131" + "01" + taskHex + "00000001" + "00"},
		{"SubmitRequest retries and generator", &SubmitRequest{Task: testTask, Function: "g", NumReturns: 0,
			Resources: Resources{CPUs: 0, GPUs: 1}, MaxRetries: -1, Retry: RetryListed, RetryOn: []string{"E1"},
			Generator: true, NoEvents: true, Backpressure: 200},
			taskHex + "0167" + "00" + "0000000000000000" + "000000000000f03f" + "00" +
				"01" + "02" + "01" + "024531" + "03" + "c801" +
				"00" + "00" + "00" + "00" + // limits, grants
				noActor +
				"00"},
		{"SubmitRequest limits and grants", &SubmitRequest{Task: testTask, Function: "f", NumReturns: 1,
			Resources: Resources{CPUs: -1},
			Limits:    Limits{MemoryPages: 300, TimeoutNs: 1000},
			Grants: Grants{
				Mounts: []Mount{{Host: "/d", Guest: "/g", ReadOnly: true}, {Host: "h", Guest: ""}},
				Env:    []KV{{Name: "K", Value: "v"}},
			}},
			taskHex + "0166" + "01" + "000000000000f0bf" + "0000000000000000" + "00" +
				"00" + "00" + "00" + "00" + "00" + // max retries, retry mode, retry-on, flags, backpressure
				"ac02" + // memory pages 300, uvarint
				"d00f" + // timeout 1000, zigzag varint (2000)
				"02" + "022f64" + "022f67" + "01" + "0168" + "00" + "00" + // 2 mounts: host, guest, mode (1 read-only, 0 read-write)
				"01" + "014b" + "0176" + // 1 env var: name, value
				noActor +
				"00"}, // no args
		{"SubmitRequest actor create", &SubmitRequest{Task: testTask2, Function: "C", NumReturns: 1,
			Resources: Resources{CPUs: -1}, Kind: KindActorCreate, MaxRestarts: -1, MaxTaskRetries: 3,
			Name: "n", Namespace: "ns", Args: []Arg{{Value: Value{Codec: CodecJSON, Data: []byte("1")}}}},
			task2Hex + "0143" + "01" + "000000000000f0bf" + "0000000000000000" + "00" +
				"00" + "00" + "00" + "00" + "00" + // max retries, retry mode, retry-on, flags, backpressure
				"00" + "00" + "00" + "00" + // limits, grants
				"04" + zeroTask + // kind, actor
				"01" + // max restarts -1, zigzag varint
				"06" + // max task retries 3, zigzag varint
				"016e" + "026e73" + // name, namespace
				"01" + "00" + "000131"},
		{"SubmitRequest actor create max restarts", &SubmitRequest{Task: testTask2, Function: "C",
			Kind: KindActorCreate, MaxRestarts: MaxIndex, MaxTaskRetries: MaxIndex - 1},
			task2Hex + "0143" + "00" + "0000000000000000" + "0000000000000000" + "00" +
				"00" + "00" + "00" + "00" + "00" + "00" + "00" + "00" + "00" +
				"04" + zeroTask +
				"8080808008" + // 2^30, zigzag 2^31
				"feffffff07" + // 2^30-1, zigzag 2^31-2
				"00" + "00" + "00"},
		{"SubmitRequest actor call", &SubmitRequest{Task: testTask, Function: "C.m", NumReturns: 1,
			Resources: Resources{CPUs: 1}, Kind: KindActorCall, Actor: testTask2,
			Args: []Arg{{IsRef: true, Ref: Ref{ID: testRet0, Owner: "o"}}}},
			taskHex + "03432e6d" + "01" + "000000000000f03f" + "0000000000000000" + "00" +
				"00" + "00" + "00" + "00" + "00" + "00" + "00" + "00" + "00" +
				"05" + task2Hex + "00" + "00" + "00" + "00" +
				"01" + "01" + taskHex + "00000001" + "016f"},
		{"SubmitRequest explicit kind call", &SubmitRequest{Task: testTask, Function: "f", Kind: KindCall},
			taskHex + "0166" + "00" + "0000000000000000" + "0000000000000000" + "00" +
				"00" + "00" + "00" + "00" + "00" + "00" + "00" + "00" + "00" +
				"01" + zeroTask + "00" + "00" + "00" + "00" +
				"00"},
		{"GetActorRequest", &GetActorRequest{Name: "counter", Namespace: "ns"}, "07636f756e746572" + "026e73"},
		{"GetActorRequest empty", &GetActorRequest{}, "00" + "00"},
		{"ActorInfo", &ActorInfo{Actor: testTask2, Owner: "h:1", Class: "Counter"},
			task2Hex + "03683a31" + "07436f756e746572"},
		{"KillRequest restart", &KillRequest{Actor: testTask2}, task2Hex + "00"},
		{"KillRequest no restart", &KillRequest{Actor: testTask2, NoRestart: true}, task2Hex + "01"},
		{"NextRequest", &NextRequest{Task: testTask, Index: 3, TimeoutNs: -1}, taskHex + "03" + "01"},
		{"NextReply end", &NextReply{End: true}, "01"},
		{"NextReply more", &NextReply{}, "00"},
		{"CancelRequest", &CancelRequest{Ref: Ref{ID: testRet0, Owner: "o"}, Force: true, Recursive: true},
			taskHex + "00000001" + "016f" + "03"},
		{"lone Value", &loneValue{V: Value{Codec: CodecJSON, Data: []byte("1")}}, "000131"},
		{"GetRequest", &GetRequest{TimeoutNs: -1, Refs: []Ref{{ID: testPut0, Owner: "o"}}},
			"01" + "01" + taskHex + "80000000" + "016f"},
		{"GetReply", &GetReply{Values: []Value{{Codec: CodecJSON, Data: []byte("42")}}}, "01" + "00023432"},
		{"PutRequest", &PutRequest{ID: testPut0, Value: Value{Codec: CodecRaw, Data: []byte{0xff}}},
			taskHex + "80000000" + "0101ff"},
		{"WaitRequest", &WaitRequest{TimeoutNs: 1, NumReturns: 1, Refs: nil}, "02" + "01" + "00"},
		{"WaitReply", &WaitReply{Ready: []uint32{1, 300}}, "02" + "01" + "ac02"},
		{"Result", &Result{Values: []Value{{Codec: CodecError, Data: []byte("{}")}}}, "01" + "02027b7d"},
		{"SleepRequest", &SleepRequest{Ns: 64}, "8001"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := hex.EncodeToString(c.msg.Encode(nil)); got != c.want {
				t.Errorf("Encode = %s\n          want %s", got, c.want)
			}
			// The golden bytes decode back to the message.
			in, err := hex.DecodeString(c.want)
			if err != nil {
				t.Fatal(err)
			}
			got := reflect.New(reflect.TypeOf(c.msg).Elem()).Interface().(message)
			if err := got.Decode(in); err != nil {
				t.Fatalf("Decode(%s) = %v", c.want, err)
			}
			if !equalMsg(c.msg, got) {
				t.Fatalf("Decode(%s)\n got  %+v\n want %+v", c.want, got, c.msg)
			}
		})
	}
}

func TestTaskErrorEncodeDecode(t *testing.T) {
	cases := []struct {
		name string
		err  *TaskError
	}{
		{"minimal", &TaskError{Kind: ErrorApplication, Message: "boom"}},
		{"every field", &TaskError{
			Kind: ErrorPanic, TaskID: testTask.String(), Function: "square", Host: "10.0.0.1:7000",
			Attempt: 4, Message: "runtime error: index out of range", Stack: "goroutine 1 [running]:\n...",
		}},
		{"nested cause", &TaskError{
			Kind: ErrorDependency, Function: "outer", Message: "argument 1 failed",
			Cause: &TaskError{Kind: ErrorCancelled, Function: "inner", Message: "cancelled",
				Cause: &TaskError{Kind: ErrorWorkerDied, Message: "oom"}},
		}},
		{"unicode and quotes", &TaskError{Kind: ErrorHost, Message: "\"quoted\" \u2028 \x00 ünï"}},
		{"max attempt", &TaskError{Kind: ErrorTrap, Attempt: math.MaxUint32}},
		{"timeout", &TaskError{Kind: ErrorTimeout, Function: "slow", Attempt: 2, Message: "ran past its 1s timeout"}},
		{"out of memory", &TaskError{Kind: ErrorOutOfMemory, Function: "big", Message: "memory limit of 16 pages"}},
		{"limit", &TaskError{Kind: ErrorLimit, Message: "result too large", Code: "E_SIZE"}},
		{"actor died", &TaskError{Kind: ErrorActorDied, TaskID: testTask.String(), Function: "Counter.Incr",
			Message: "the actor was killed",
			Cause:   &TaskError{Kind: ErrorWorkerDied, Function: "Counter", Attempt: 3, Message: "out of restarts"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := c.err.Encode()
			if v.Codec != CodecError {
				t.Fatalf("Encode().Codec = %v, want %v", v.Codec, CodecError)
			}
			got := DecodeTaskError(v.Data)
			if !equalMsg(c.err, got) {
				t.Fatalf("DecodeTaskError(%s)\n got  %+v\n want %+v", v.Data, got, c.err)
			}
			// It travels inside messages too.
			var res Result
			if err := res.Decode((&Result{Values: []Value{v}}).Encode(nil)); err != nil {
				t.Fatal(err)
			}
			if !equalMsg(c.err, DecodeTaskError(res.Values[0].Data)) {
				t.Fatal("TaskError changed inside a Result")
			}
		})
	}
}

func TestDecodeTaskErrorUndecodable(t *testing.T) {
	for _, in := range []string{"", "garbage", "null", "{}", `{"message":"no kind"}`, `{"kind":7}`, `[1,2]`, "\xff\xfe"} {
		t.Run(in, func(t *testing.T) {
			got := DecodeTaskError([]byte(in))
			if got == nil {
				t.Fatal("DecodeTaskError returned nil")
			}
			if got.Kind != ErrorHost {
				t.Errorf("Kind = %q, want %q", got.Kind, ErrorHost)
			}
			if !strings.Contains(got.Message, "undecodable task error") || !strings.HasSuffix(got.Message, in) {
				t.Errorf("Message = %q, want it to say undecodable and quote the bytes", got.Message)
			}
		})
	}
}

func TestDescriptionJSON(t *testing.T) {
	cases := []struct {
		name     string
		d        Description
		contains []string
		absent   []string
	}{
		{"empty", Description{ABI: Version},
			[]string{`"abi":1`, `"functions":null`, `"has_main":false`}, []string{`"error"`}},
		{"functions and main", Description{ABI: Version, HasMain: true, Functions: []FunctionInfo{
			{Name: "square", NumArgs: 1, NumReturns: 1},
			{Name: "sum", NumArgs: -1, NumReturns: 1},
		}}, []string{`"has_main":true`, `{"name":"square","num_args":1,"num_returns":1,`, `"num_args":-1`}, []string{`"error"`, `"generator"`, `"actor"`}},
		{"actor class and method", Description{ABI: Version, Functions: []FunctionInfo{
			{Name: "Counter", NumArgs: 1, NumReturns: 1, Actor: "class"},
			{Name: "Counter.Incr", NumArgs: 1, NumReturns: 1, Actor: "method"},
			{Name: "Counter.Stream", NumArgs: 0, NumReturns: 0, Generator: true, Actor: "method"},
			{Name: "plain", NumArgs: 0, NumReturns: 1},
		}}, []string{
			`{"name":"Counter","num_args":1,"num_returns":1,"actor":"class",`,
			`{"name":"Counter.Incr","num_args":1,"num_returns":1,"actor":"method",`,
			`"generator":true,"actor":"method"`,
			`{"name":"plain","num_args":0,"num_returns":1,"defaults":`,
		}, []string{`"error"`}},
		{"generator with defaults", Description{ABI: Version, Functions: []FunctionInfo{{
			Name: "ticks", NumArgs: 0, NumReturns: 0, Generator: true,
			Defaults: CallOptions{Resources: Resources{CPUs: -1, GPUs: 1, Custom: []Custom{{Name: "tpu", Amount: 2}}},
				MaxRetries: -1, Retry: RetryListed, RetryOn: []string{"E1"}, Backpressure: 8, NoEvents: true},
		}}}, []string{`"generator":true`, `"max_retries":-1`, `"retry_on":["E1"]`, `"backpressure":8`, `"no_events":true`,
			`"limits":{}`, `"grants":{}`}, []string{`"memory_pages"`, `"timeout_ns"`, `"mounts"`, `"env"`}},
		{"limits and grants", Description{ABI: Version, Functions: []FunctionInfo{{
			Name: "io", NumArgs: 1, NumReturns: 1,
			Defaults: CallOptions{Resources: Resources{CPUs: -1},
				Limits: Limits{MemoryPages: 256, TimeoutNs: 5_000_000_000},
				Grants: Grants{
					Mounts: []Mount{{Host: "/srv/data", Guest: "/data", ReadOnly: true}, {Host: "/tmp", Guest: "/tmp"}},
					Env:    []KV{{Name: "K", Value: "v"}, {Name: "", Value: ""}},
				}},
		}}}, []string{
			`"limits":{"memory_pages":256,"timeout_ns":5000000000}`,
			`"grants":{"mounts":[{"host":"/srv/data","guest":"/data","read_only":true},{"host":"/tmp","guest":"/tmp","read_only":false}],` +
				`"env":[{"name":"K","value":"v"},{"name":"","value":""}]}`,
		}, nil},
		{"timeout only, env only", Description{ABI: Version, Functions: []FunctionInfo{{
			Name: "f", Defaults: CallOptions{Limits: Limits{TimeoutNs: 1}, Grants: Grants{Env: []KV{{Name: "A", Value: "b"}}}},
		}}}, []string{`"limits":{"timeout_ns":1}`, `"grants":{"env":[{"name":"A","value":"b"}]}`},
			[]string{`"memory_pages"`, `"mounts"`}},
		{"error", Description{ABI: Version, Error: `ray: remote function "f" registered twice`},
			[]string{`"error":"ray: remote function \"f\" registered twice"`}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := json.Marshal(c.d)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range c.contains {
				if !strings.Contains(string(b), s) {
					t.Errorf("%s does not contain %s", b, s)
				}
			}
			for _, s := range c.absent {
				if strings.Contains(string(b), s) {
					t.Errorf("%s contains %s", b, s)
				}
			}
			var got Description
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if !equalMsg(c.d, got) {
				t.Errorf("round trip\n got  %+v\n want %+v", got, c.d)
			}
		})
	}
}

func TestStringsAndValidity(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{OpSubmit.String(), "submit"}, {OpGet.String(), "get"}, {OpPut.String(), "put"},
		{OpWait.String(), "wait"}, {OpResult.String(), "result"}, {OpCancelled.String(), "cancelled"},
		{OpSleep.String(), "sleep"}, {OpYield.String(), "yield"}, {OpNext.String(), "next"}, {OpCancel.String(), "cancel"},
		{OpGetActor.String(), "get_actor"}, {OpKill.String(), "kill"},
		{Op(0).String(), "op(?)"}, {Op(18).String(), "op(?)"}, {OpPutData.String(), "put_data"}, {OpStart.String(), "start"}, {OpPoll.String(), "poll"}, {OpDone.String(), "done"}, {Op(99).String(), "op(?)"},
		{ErrCodeBadRequest.String(), "bad request"}, {ErrCodeTimeout.String(), "timeout"},
		{ErrCodeCancelled.String(), "cancelled"}, {ErrCodeUnknownOp.String(), "unknown op"},
		{ErrCodeHost.String(), "host error"}, {ErrCodeTooLarge.String(), "too large"},
		{ErrCodeNotFound.String(), "not found"},
		{ErrCode(0).String(), "error"}, {ErrCode(-8).String(), "error"}, {ErrCode(-99).String(), "error"},
		{CodecJSON.String(), "json"}, {CodecRaw.String(), "raw"}, {CodecError.String(), "error"},
		{CodecInts.String(), "ints"}, {CodecCBOR.String(), "cbor"}, {Codec(5).String(), "codec(?)"},
		// Error kinds travel as strings inside CodecError values.
		{string(ErrorApplication), "application"}, {string(ErrorPanic), "panic"},
		{string(ErrorBadRequest), "bad_request"}, {string(ErrorTrap), "trap"},
		{string(ErrorWorkerDied), "worker_died"}, {string(ErrorCancelled), "cancelled"},
		{string(ErrorDependency), "dependency"}, {string(ErrorInfeasible), "infeasible"},
		{string(ErrorHost), "host"}, {string(ErrorEndOfStream), "end_of_stream"},
		{string(ErrorTimeout), "timeout"}, {string(ErrorOutOfMemory), "out_of_memory"},
		{string(ErrorLimit), "limit"}, {string(ErrorActorDied), "actor_died"},
	} {
		if c.got != c.want {
			t.Errorf("String() = %q, want %q", c.got, c.want)
		}
	}
	for c := range 256 {
		if got, want := Codec(c).Valid(), c <= 4; got != want {
			t.Errorf("Codec(%d).Valid() = %v, want %v", c, got, want)
		}
	}
}

// TestABINumbers pins the numbers that travel between host and guest: ops,
// error codes, invocation kinds, statuses and codecs.
func TestABINumbers(t *testing.T) {
	cases := []struct {
		name      string
		got, want int64
	}{
		{"OpSubmit", int64(OpSubmit), 1}, {"OpGet", int64(OpGet), 2}, {"OpPut", int64(OpPut), 3},
		{"OpWait", int64(OpWait), 4}, {"OpResult", int64(OpResult), 5}, {"OpCancelled", int64(OpCancelled), 6},
		{"OpSleep", int64(OpSleep), 7}, {"OpYield", int64(OpYield), 8}, {"OpNext", int64(OpNext), 9},
		{"OpCancel", int64(OpCancel), 10}, {"OpGetActor", int64(OpGetActor), 11}, {"OpKill", int64(OpKill), 12},
		{"ErrCodeBadRequest", int64(ErrCodeBadRequest), -1}, {"ErrCodeTimeout", int64(ErrCodeTimeout), -2},
		{"ErrCodeCancelled", int64(ErrCodeCancelled), -3}, {"ErrCodeUnknownOp", int64(ErrCodeUnknownOp), -4},
		{"ErrCodeHost", int64(ErrCodeHost), -5}, {"ErrCodeTooLarge", int64(ErrCodeTooLarge), -6},
		{"ErrCodeNotFound", int64(ErrCodeNotFound), -7},
		{"KindCall", int64(KindCall), 1}, {"KindMain", int64(KindMain), 2}, {"KindDescribe", int64(KindDescribe), 3},
		{"KindActorCreate", int64(KindActorCreate), 4}, {"KindActorCall", int64(KindActorCall), 5},
		{"StatusOK", int64(StatusOK), 0}, {"StatusError", int64(StatusError), 1}, {"StatusBadRequest", int64(StatusBadRequest), 2},
		{"CodecJSON", int64(CodecJSON), 0}, {"CodecRaw", int64(CodecRaw), 1}, {"CodecError", int64(CodecError), 2},
		{"RetryNone", int64(RetryNone), 0}, {"RetryAll", int64(RetryAll), 1}, {"RetryListed", int64(RetryListed), 2},
		{"MaxIndex", MaxIndex, 1 << 30},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
			}
		})
	}
}

func TestValidCPUs(t *testing.T) {
	for _, c := range []struct {
		cpus float64
		want bool
	}{
		{-1, true}, {0, true}, {0.25, true}, {1, true}, {1e9, true}, {math.MaxFloat64, true},
		{-0.5, false}, {-2, false}, {math.Inf(1), false}, {math.Inf(-1), false}, {math.NaN(), false},
	} {
		if got := ValidCPUs(c.cpus); got != c.want {
			t.Errorf("ValidCPUs(%v) = %v, want %v", c.cpus, got, c.want)
		}
	}
}

// The IDs the tests use must be what they claim to be.
func TestTestIDs(t *testing.T) {
	if testRet0.IsPut() || testRet5.IsPut() || !testPut0.IsPut() || !testPut9.IsPut() {
		t.Fatal("test ids are not of the kinds the tests assume")
	}
	if zeroIndexID().Index() != 0 || zeroIndexID().IsZero() {
		t.Fatal("zeroIndexID is not a non-zero id with index 0")
	}
}
