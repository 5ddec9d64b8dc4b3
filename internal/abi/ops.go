package abi

// Route says who answers an op and how (guest-sdk/ABI.md §5).
type Route uint8

const (
	// RouteUnknown: no guest may call the op; the worker answers
	// ErrCodeUnknownOp.
	RouteUnknown Route = iota
	// RouteWorker: the worker answers it itself (result, cancelled, sleep,
	// and the concurrent actors' start, poll and done).
	RouteWorker
	// RoutePipelined: the worker checks it and forwards it to the host
	// without waiting; the guest gets 0 at once (submit, put, cancel, kill).
	RoutePipelined
	// RouteRoundTrip: the worker forwards it and waits for the host's
	// reply (get, wait, yield, next, get_actor).
	RouteRoundTrip
	// RouteHostOnly: host-internal (OpPutHeld, OpYieldHeld): a host sends
	// it to another; no guest may (the worker answers ErrCodeUnknownOp).
	RouteHostOnly
)

// Limit names the Exec limit a request's size is held to.
type Limit uint8

const (
	LimitNone   Limit = iota
	LimitArgs         // MaxArgBytes
	LimitResult       // MaxResultBytes
)

// opSpec is one row of the op table.
type opSpec struct {
	name  string
	route Route
	limit Limit
	// atRunner: served by the host the task runs on, even when the task
	// belongs to another host (the values must be where the task is);
	// every other forwarded op is relayed to the task's owner.
	atRunner bool
	// check decodes a request (nil: no request to check).
	check func([]byte) error
}

// ops is the table of ops: the worker, the host and the peer relay all
// classify ops by it. An array: the worker looks an op up on every call.
var ops = [...]opSpec{
	OpSubmit:    {name: "submit", route: RoutePipelined, limit: LimitArgs, check: checkSubmit},
	OpGet:       {name: "get", route: RouteRoundTrip, atRunner: true, check: checkGet},
	OpPut:       {name: "put", route: RoutePipelined, limit: LimitResult, check: checkPut},
	OpWait:      {name: "wait", route: RouteRoundTrip, atRunner: true, check: checkWait},
	OpResult:    {name: "result", route: RouteWorker, limit: LimitResult, check: checkResult},
	OpCancelled: {name: "cancelled", route: RouteWorker, check: checkEmpty},
	OpSleep:     {name: "sleep", route: RouteWorker, check: checkSleep},
	OpYield:     {name: "yield", route: RouteRoundTrip, limit: LimitResult, check: checkValue},
	OpNext:      {name: "next", route: RouteRoundTrip, check: checkNext},
	OpCancel:    {name: "cancel", route: RoutePipelined, check: checkCancel},
	OpGetActor:  {name: "get_actor", route: RouteRoundTrip, check: checkGetActor},
	OpKill:      {name: "kill", route: RoutePipelined, check: checkKill},
	OpRelease:   {name: "release", route: RoutePipelined, limit: LimitArgs, check: checkRelease},
	OpStart:     {name: "start", route: RouteWorker, check: checkStart},
	OpPoll:      {name: "poll", route: RouteWorker, check: checkPoll},
	OpDone:      {name: "done", route: RouteWorker, limit: LimitResult, check: checkDone},
	// The worker reads the bytes where they are, holds them to
	// LimitResult itself, and forwards an OpPut.
	OpPutData: {name: "put_data", route: RouteWorker, check: checkPutData},
}

// spec returns o's row of the table.
func spec(o Op) (opSpec, bool) {
	if o < Op(len(ops)) && ops[o].name != "" {
		return ops[o], true
	}
	switch o { // the host-internal ops
	case OpPutHeld:
		return opSpec{name: "put_held", route: RouteHostOnly}, true
	case OpYieldHeld:
		return opSpec{name: "yield_held", route: RouteHostOnly}, true
	}
	return opSpec{}, false
}

// The checks are plain functions, so the table is static data: a guest,
// which links package abi but never the table, does not link them.
func checkSubmit(b []byte) error   { var m SubmitRequest; return m.Decode(b) }
func checkGet(b []byte) error      { var m GetRequest; return m.Decode(b) }
func checkPut(b []byte) error      { var m PutRequest; return m.Decode(b) }
func checkWait(b []byte) error     { var m WaitRequest; return m.Decode(b) }
func checkResult(b []byte) error   { var m Result; return m.Decode(b) }
func checkSleep(b []byte) error    { var m SleepRequest; return m.Decode(b) }
func checkNext(b []byte) error     { var m NextRequest; return m.Decode(b) }
func checkCancel(b []byte) error   { var m CancelRequest; return m.Decode(b) }
func checkGetActor(b []byte) error { var m GetActorRequest; return m.Decode(b) }
func checkKill(b []byte) error     { var m KillRequest; return m.Decode(b) }
func checkRelease(b []byte) error  { var m ReleaseRequest; return m.Decode(b) }
func checkPutData(b []byte) error  { var m PutDataRequest; return m.Decode(b) }

func checkValue(b []byte) error { _, err := DecodeValue(b); return err }

func checkEmpty(b []byte) error {
	if len(b) != 0 {
		return ErrMalformed
	}
	return nil
}

func (o Op) String() string {
	if s, ok := spec(o); ok {
		return s.name
	}
	return "op(?)"
}

// Route says who answers o.
func (o Op) Route() Route { s, _ := spec(o); return s.route }

// Limit is the Exec limit o's request is held to.
func (o Op) Limit() Limit { s, _ := spec(o); return s.limit }

// AtRunner reports whether the host a task runs on answers o itself,
// even for a task another host owns (get and wait: the values must be
// where the task is). Other forwarded ops go to the task's owner.
func (o Op) AtRunner() bool { s, _ := spec(o); return s.atRunner }

// FromGuest reports whether a guest may call o.
func (o Op) FromGuest() bool {
	r := o.Route()
	return r != RouteUnknown && r != RouteHostOnly
}

// CheckRequest decodes req as o's request: ErrMalformed (wrapped) if it
// is not one. An op a guest may not call is refused too.
func CheckRequest(o Op, req []byte) error {
	s, ok := spec(o)
	if !ok || !o.FromGuest() {
		return ErrMalformed
	}
	if s.check == nil {
		return nil
	}
	return s.check(req)
}
