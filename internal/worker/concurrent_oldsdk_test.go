package worker

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/internal/ipc"
)

func uleb(n int) []byte {
	var b []byte
	for {
		c := byte(n & 0x7f)
		if n >>= 7; n == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// sleepyModule is a guest whose every invoke sleeps ns (op sleep), sets an
// empty result (op result) and returns: it never polls, as a module built
// with an SDK older than concurrent actors.
func sleepyModule(ns int64) []byte {
	res := (&abi.Result{}).Encode(nil)
	slp := (&abi.SleepRequest{Ns: ns}).Encode(nil)
	section := func(id byte, body []byte) []byte { return append(append([]byte{id}, uleb(len(body))...), body...) }
	name := func(s string) []byte { return append(uleb(len(s)), s...) }
	cat := func(bs ...[]byte) (out []byte) {
		for _, b := range bs {
			out = append(out, b...)
		}
		return out
	}
	const slpAt = 256 // the sleep request's offset in memory; the result's is 0
	m := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	// types: () -> i32; (i32) -> i32; (i32 i32 i32) -> i64
	m = append(m, section(1, []byte{3, 0x60, 0, 1, 0x7f, 0x60, 1, 0x7f, 1, 0x7f, 0x60, 3, 0x7f, 0x7f, 0x7f, 1, 0x7e})...)
	m = append(m, section(2, cat([]byte{1}, name("rayhost"), name("call"), []byte{0, 2}))...) // import call: func 0
	m = append(m, section(3, []byte{2, 0, 1})...)
	m = append(m, section(5, []byte{1, 0, 1})...) // one page of memory
	m = append(m, section(7, cat([]byte{3}, name("rayhost_abi_version"), []byte{0, 1}, name("rayhost_invoke"), []byte{0, 2}, name("memory"), []byte{2, 0}))...)
	version := []byte{0, 0x41, 1, 0x0b}
	invoke := cat([]byte{0},
		[]byte{0x41, byte(abi.OpSleep), 0x41}, uleb(slpAt), []byte{0x41}, uleb(len(slp)), []byte{0x10, 0, 0x1a}, // call(sleep); drop
		[]byte{0x41, byte(abi.OpResult), 0x41, 0, 0x41}, uleb(len(res)), []byte{0x10, 0, 0x1a}, // call(result); drop
		[]byte{0x41, 0, 0x0b}) // return 0
	m = append(m, section(10, cat([]byte{2}, uleb(len(version)), version, uleb(len(invoke)), invoke))...)
	data := cat([]byte{2},
		[]byte{0, 0x41, 0, 0x0b}, uleb(len(res)), res,
		[]byte{0, 0x41}, uleb(slpAt), []byte{0x0b}, uleb(len(slp)), slp)
	return append(m, section(11, data)...)
}

// TestConcurrentOldGuestRunsInALoop: a concurrent actor whose guest never
// polls (an older SDK) has the calls that arrive during an invoke run
// after it, one invoke each, every one answered; the run loop runs them
// one after another, not each inside the last (which grew the worker's
// stack by one frame set per call until it crashed).
func TestConcurrentOldGuestRunsInALoop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.wasm")
	if err := os.WriteFile(path, sleepyModule(200_000), 0o644); err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- Run(ctx, a, DefaultConfig()) }()
	t.Cleanup(func() { cancel(); b.Close(); <-ran })
	host := ipc.NewConn(b)
	if typ, _, err := host.Read(nil); err != nil || typ != ipc.TypeReady {
		t.Fatalf("ready: %v %v", typ, err)
	}
	send := func(ex ipc.Exec) {
		t.Helper()
		if err := host.Write(ipc.TypeExec, ex.Encode(nil)); err != nil {
			t.Fatal(err)
		}
	}
	done := func() ipc.Done {
		t.Helper()
		for {
			typ, p, err := host.Read(nil)
			if err != nil {
				t.Fatal(err)
			}
			var d ipc.Done
			if typ == ipc.TypeDone {
				if err := d.Decode(p); err != nil {
					t.Fatal(err)
				}
				return d
			}
		}
	}
	actor := ids.NewTaskID()
	send(ipc.Exec{Task: actor, ModulePath: path, MemoryPages: 16, Actor: actor, ActorCreate: true, MaxConcurrency: 4})
	if d := done(); d.Trap != "" || d.Status != abi.StatusOK {
		t.Fatalf("creation: %+v", d)
	}
	call := func() ids.TaskID {
		ex := ipc.Exec{Task: ids.NewTaskID(), ModulePath: path, MemoryPages: 16, Actor: actor}
		send(ex)
		return ex.Task
	}
	const inFlight, total = 4, 200
	want := map[ids.TaskID]bool{}
	for range inFlight {
		want[call()] = true
	}
	deepest := 0
	for n := range total {
		d := done()
		if d.Trap != "" || d.Status != abi.StatusOK || !want[d.Task] {
			t.Fatalf("call %d: %+v", n, d)
		}
		delete(want, d.Task)
		if n%20 == 0 {
			deepest = max(deepest, executeDepth())
		}
		if n+inFlight < total {
			want[call()] = true
		}
	}
	if deepest > 1 {
		t.Fatalf("execute nested %d deep in the run loop's stack after calls ran after others", deepest)
	}
}

// executeDepth is the most frames of Worker.execute in one goroutine.
func executeDepth() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	deepest := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		deepest = max(deepest, strings.Count(g, "worker.(*Worker).execute("))
	}
	return deepest
}
