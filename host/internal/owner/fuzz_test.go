package owner

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

// FuzzCallFromRequest feeds arbitrary submissions (JSON, as curl sends them,
// or protobuf) to the API's validation: it must never panic, must refuse
// with a known error, and what it accepts must be well-formed.
func FuzzCallFromRequest(f *testing.F) {
	for _, seed := range []string{
		`{"module":"m","function":"add","args":[{"json":"2"},{"json":"3"}]}`,
		`{"function":"add","args":[{"ref":{"id":"00112233445566778899aabbccddeeff00000001"}},{"raw":"AAE="}]}`,
		`{"function":"add","args":[{"json":"{"},{"json":"3"}]}`,
		`{"function":"gen","options":{"resources":{"numCpus":-1,"custom":{"disk":1e308}},"maxRetries":-7}}`,
		`{"function":"add","args":[{},{"json":"1"}],"options":{"numReturns":3,"memoryLimitBytes":"99999999999","timeoutMs":"9223372036854775807"}}`,
		`{"function":"add","args":[{"json":"1"},{"json":"1"}],"options":{"mounts":[{"hostPath":"/etc","guestPath":"/x"}],"env":{"A=B":"c"}}}`,
		`{"function":"nope"}`,
	} {
		f.Add([]byte(seed))
	}
	h := &Owner{cfg: testConfig(f.TempDir())}
	h.roles()
	if err := h.adm.newModules(); err != nil { // the registry and the call policy
		f.Fatal(err)
	}
	mod := &module{Digest: strings.Repeat("ab", 32), Funcs: map[string]abi.FunctionInfo{
		"add": {Name: "add", NumArgs: 2, NumReturns: 1, Defaults: abi.CallOptions{Resources: abi.Resources{CPUs: -1}, MaxRetries: 3}},
		"gen": {Name: "gen", NumArgs: 0, Generator: true, Defaults: abi.CallOptions{Resources: abi.Resources{CPUs: -1}, Backpressure: 2}},
	}}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m rayhostv1.SubmitRequest
		if protojson.Unmarshal(data, &m) != nil && proto.Unmarshal(data, &m) != nil {
			return
		}
		task, err := h.adm.callFromRequest(&m, mod)
		if err != nil {
			for _, known := range []error{ErrFunctionNotFound, ErrInvalidArgument, ErrPermissionDenied, ids.ErrInvalidID} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("unexpected error %v for %s", err, data)
		}
		f := mod.Funcs[task.function]
		switch {
		case task.numReturns != f.NumReturns:
			t.Fatalf("accepted %d returns for %s", task.numReturns, task.function)
		case f.NumArgs >= 0 && len(task.args) != f.NumArgs:
			t.Fatalf("accepted %d args for %s", len(task.args), task.function)
		case task.req.CPU < 0 || task.req.GPU < 0:
			t.Fatalf("accepted negative resources %v", task.req)
		case task.limits.MemoryPages > 65536 || task.limits.TimeoutNs < 0:
			t.Fatalf("accepted limits %+v", task.limits)
		case task.maxRetries < -1:
			t.Fatalf("accepted max_retries %d", task.maxRetries)
		}
		for _, a := range task.args {
			if a.IsRef && a.Ref.ID.Index() == 0 {
				t.Fatal("accepted an invalid ObjectRef")
			}
		}
		for _, c := range task.req.Custom {
			if c.Units < 0 {
				t.Fatalf("accepted custom resource %v", c)
			}
		}
	})
}
