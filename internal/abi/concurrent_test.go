package abi

import (
	"errors"
	"reflect"
	"testing"

	"github.com/rayhost/rayhost/internal/ids"
)

// TestConcurrentMessages: the messages of ops start, poll and done round
// trip, and malformed ones are refused.
func TestConcurrentMessages(t *testing.T) {
	task := ids.NewTaskID()
	sleep := (&SleepRequest{Ns: 5}).Encode(nil)
	start := StartRequest{Task: task, Tag: 7, Op: OpSleep, Payload: sleep}
	var s StartRequest
	if err := s.Decode(start.Encode(nil)); err != nil || !reflect.DeepEqual(s, start) {
		t.Fatalf("start: %+v, %v", s, err)
	}
	ev := PollEvent{Kind: EventCompletion, Tag: 7, Code: -3, Task: task, Data: []byte("x")}
	var e PollEvent
	if err := e.Decode(ev.Encode(nil)); err != nil || !reflect.DeepEqual(e, ev) {
		t.Fatalf("event: %+v, %v", e, err)
	}
	res := (&Result{Values: []Value{{Codec: CodecJSON, Data: []byte("1")}}}).Encode(nil)
	done := DoneRequest{Task: task, Status: StatusError, Result: res}
	var d DoneRequest
	if err := d.Decode(done.Encode(nil)); err != nil || !reflect.DeepEqual(d, done) {
		t.Fatalf("done: %+v, %v", d, err)
	}
	var p PollRequest
	if err := p.Decode((&PollRequest{TimeoutNs: -1}).Encode(nil)); err != nil || p.TimeoutNs != -1 {
		t.Fatalf("poll: %+v, %v", p, err)
	}

	bad := map[string]struct {
		op  Op
		req []byte
	}{
		"start of op result":   {OpStart, (&StartRequest{Task: task, Op: OpResult}).Encode(nil)},
		"start of op start":    {OpStart, (&StartRequest{Task: task, Op: OpStart}).Encode(nil)},
		"start of a host op":   {OpStart, (&StartRequest{Task: task, Op: OpPutHeld}).Encode(nil)},
		"start, truncated":     {OpStart, start.Encode(nil)[:10]},
		"done with status 3":   {OpDone, (&DoneRequest{Task: task, Status: 3, Result: res}).Encode(nil)},
		"done with no result":  {OpDone, (&DoneRequest{Task: task, Result: []byte{0xff}}).Encode(nil)},
		"poll, trailing bytes": {OpPoll, append((&PollRequest{}).Encode(nil), 0)},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			if err := CheckRequest(tc.op, tc.req); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%v, want ErrMalformed", err)
			}
		})
	}
	if err := (&PollEvent{}).Decode((&PollEvent{Kind: 9}).Encode(nil)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("event kind 9: %v", err)
	}
}
