//go:build !wasip1

// This file holds local mode's objects: their values, Get, Wait, and a
// generator's items (Yield, Next).

package ray

import (
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

var endOfStream = (&abi.TaskError{Kind: abi.ErrorEndOfStream, Message: "end of stream"}).Encode()

// valueLocked returns the value of id if it is ready, and whether the
// object is known at all (an object of a task not finished yet is).
func (l *localHost) valueLocked(id ids.ObjectID) (v abi.Value, ready, known bool) {
	if v, ok := l.objects[id]; ok {
		return v, true, true
	}
	t := l.tasks[id.Task()]
	if t == nil || id.IsPut() {
		return abi.Value{}, false, false
	}
	i := id.ReturnIndex()
	if !t.req.Generator {
		return abi.Value{}, false, i < max(int(t.req.NumReturns), 1)
	}
	switch {
	case id.IsCompletion() && t.finished && t.failure != nil:
		return *t.failure, true, true
	case id.IsCompletion() && t.finished:
		return abi.Value{Codec: abi.CodecJSON, Data: []byte("null")}, true, true
	case !t.finished || i < t.items:
		return abi.Value{}, false, true
	case i == t.items && t.failure != nil:
		return *t.failure, true, true
	}
	return endOfStream, true, true
}

func (l *localHost) get(c *localTask, b []byte) ([]byte, abi.ErrCode) {
	var req abi.GetRequest
	if req.Decode(b) != nil {
		return nil, abi.ErrCodeBadRequest
	}
	vals := make([]abi.Value, len(req.Refs))
	code := l.await(func() bool {
		all, failed := true, -1
		for i, r := range req.Refs {
			v, ready, known := l.valueLocked(r.ID)
			if !known {
				v, ready = (&abi.TaskError{Kind: abi.ErrorBadRequest, TaskID: r.ID.Task().String(), Message: "unknown object " + r.ID.String()}).Encode(), true
			}
			vals[i] = v
			all = all && ready
			if ready && v.Codec == abi.CodecError && failed < 0 {
				failed = i
			}
		}
		if !all && failed >= 0 { // fail fast: every slot not ready holds the failure
			for i, r := range req.Refs {
				if _, ready, _ := l.valueLocked(r.ID); !ready {
					vals[i] = vals[failed]
				}
			}
		}
		return all || failed >= 0
	}, req.TimeoutNs, cancelOf(c))
	if code != 0 {
		return nil, code
	}
	rep := abi.GetReply{Values: vals}
	return rep.Encode(nil), 0
}

func (l *localHost) wait(c *localTask, b []byte) ([]byte, abi.ErrCode) {
	var req abi.WaitRequest
	if req.Decode(b) != nil || req.NumReturns < 1 || int(req.NumReturns) > len(req.Refs) {
		return nil, abi.ErrCodeBadRequest
	}
	var ready []uint32
	unknown := false
	code := l.await(func() bool {
		ready = ready[:0]
		for i, r := range req.Refs {
			_, ok, known := l.valueLocked(r.ID)
			if !known {
				unknown = true
				return true
			}
			if ok && len(ready) < int(req.NumReturns) {
				ready = append(ready, uint32(i))
			}
		}
		return len(ready) == int(req.NumReturns)
	}, req.TimeoutNs, cancelOf(c))
	switch {
	case unknown:
		return nil, abi.ErrCodeBadRequest
	case code == abi.ErrCodeTimeout: // not an error for wait: whatever is ready
	case code != 0:
		return nil, code
	}
	rep := abi.WaitReply{Ready: ready}
	return rep.Encode(nil), 0
}

func (l *localHost) yield(c *localTask, b []byte) abi.ErrCode {
	v, err := abi.DecodeValue(b)
	if err != nil || c == nil || !c.req.Generator {
		return abi.ErrCodeBadRequest
	}
	l.mu.Lock()
	if c.finished || c.cancelled {
		l.mu.Unlock()
		return abi.ErrCodeCancelled
	}
	i := c.attemptItems
	c.attemptItems++
	if i == c.items { // an item an earlier attempt delivered is dropped
		l.objects[c.req.Task.Return(i)] = v
		c.items++
		l.broadcast()
	}
	bp := int(c.req.Backpressure)
	l.mu.Unlock()
	if bp == 0 {
		return 0
	}
	return l.await(func() bool { return c.items-c.consumed < bp }, -1, c.cancelCh)
}

func (l *localHost) next(c *localTask, b []byte) ([]byte, abi.ErrCode) {
	var req abi.NextRequest
	if req.Decode(b) != nil {
		return nil, abi.ErrCodeBadRequest
	}
	l.mu.Lock()
	g := l.tasks[req.Task]
	l.mu.Unlock()
	if g == nil || !g.req.Generator {
		return nil, abi.ErrCodeBadRequest
	}
	i := int(req.Index)
	var end bool
	code := l.await(func() bool {
		switch {
		case i < g.items:
			g.consumed = max(g.consumed, i+1)
			l.broadcast()
			return true
		case g.finished:
			end = !(i == g.items && g.failure != nil)
			return true
		}
		return false
	}, req.TimeoutNs, cancelOf(c))
	if code != 0 {
		return nil, code
	}
	rep := abi.NextReply{End: end}
	return rep.Encode(nil), 0
}
