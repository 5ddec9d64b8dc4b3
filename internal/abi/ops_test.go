package abi

import (
	"errors"
	"testing"
)

// TestOpTable: every guest op 1–17 has a route and a name; the
// host-internal ops and unknown ops are no guest's, and CheckRequest
// refuses them whatever the payload.
func TestOpTable(t *testing.T) {
	for op := OpSubmit; op <= OpPutData; op++ {
		if !op.FromGuest() || op.String() == "op(?)" {
			t.Fatalf("op %d: from guest %v, name %q", op, op.FromGuest(), op.String())
		}
	}
	for _, op := range []Op{0, 18, 99, OpPutHeld, OpYieldHeld, 1 << 31} {
		if op.FromGuest() {
			t.Fatalf("op %d (%s) is a guest's", op, op)
		}
		if err := CheckRequest(op, nil); !errors.Is(err, ErrMalformed) {
			t.Fatalf("op %d: %v", op, err)
		}
	}
	if OpPutHeld.Route() != RouteHostOnly || OpPutHeld.String() != "put_held" || OpYieldHeld.String() != "yield_held" {
		t.Fatal("host-internal ops")
	}
	routes := map[Op]Route{OpSubmit: RoutePipelined, OpPut: RoutePipelined, OpCancel: RoutePipelined, OpKill: RoutePipelined, OpRelease: RoutePipelined,
		OpGet: RouteRoundTrip, OpWait: RouteRoundTrip, OpYield: RouteRoundTrip, OpNext: RouteRoundTrip, OpGetActor: RouteRoundTrip,
		OpResult: RouteWorker, OpCancelled: RouteWorker, OpSleep: RouteWorker, OpStart: RouteWorker, OpPoll: RouteWorker, OpDone: RouteWorker, OpPutData: RouteWorker}
	for op, r := range routes {
		if op.Route() != r {
			t.Fatalf("%s routes %d, want %d", op, op.Route(), r)
		}
		if op.AtRunner() != (op == OpGet || op == OpWait) {
			t.Fatalf("%s: at runner %v", op, op.AtRunner())
		}
	}
	limits := map[Op]Limit{OpSubmit: LimitArgs, OpPut: LimitResult, OpYield: LimitResult, OpResult: LimitResult, OpGet: LimitNone}
	for op, l := range limits {
		if op.Limit() != l {
			t.Fatalf("%s limit %d, want %d", op, op.Limit(), l)
		}
	}
}

// TestCheckRequest: each guest op's check decodes its own request and
// refuses garbage.
func TestCheckRequest(t *testing.T) {
	good := map[Op][]byte{
		OpCancelled: nil,
		OpYield:     EncodeValue(nil, Value{Codec: CodecJSON, Data: []byte("1")}),
		OpSleep:     (&SleepRequest{Ns: 5}).Encode(nil),
	}
	for op, b := range good {
		if err := CheckRequest(op, b); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
	}
	for op := OpSubmit; op <= OpPutData; op++ {
		if err := CheckRequest(op, []byte{0xff, 0xff, 0xff}); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%s accepted garbage: %v", op, err)
		}
	}
	if CodecHeld.Valid() {
		t.Fatal("a guest's value may claim to be held")
	}
}
