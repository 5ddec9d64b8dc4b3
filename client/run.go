// This file holds Run, which runs a module's driver on a host and relays
// its output and progress, and its options.

package client

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
)

// LogLine is a line of guest output from a run.
type LogLine struct {
	TaskID, Function, Host, Stream string
	Data                           []byte
}

// RunProgress counts the tasks a driver started, transitively.
type RunProgress struct {
	Submitted, Finished, Failed, Cancelled int
}

// RunOption configures Run.
type RunOption func(*runOptions)

type runOptions struct {
	onProgress func(RunProgress)
	mounts     []Mount
	env        map[string]string
}

// WithGrants grants the driver directories and environment variables
// (within the host's allowed directories); its tasks may be granted these
// or less.
func WithGrants(mounts []Mount, env map[string]string) RunOption {
	return func(o *runOptions) { o.mounts, o.env = mounts, env }
}

// WithProgress calls fn with the driver's task counts as they change
// (about twice a second at most).
func WithProgress(fn func(RunProgress)) RunOption {
	return func(o *runOptions) { o.onProgress = fn }
}

// Run runs module's driver on the host, calling onLog with the output of
// the driver and its tasks as it comes. It returns the driver's error.
func (c *Client) Run(ctx context.Context, module string, onLog func(LogLine), opts ...RunOption) error {
	var o runOptions
	for _, opt := range opts {
		opt(&o)
	}
	req := &rayhostv1.RunRequest{Module: module, Progress: o.onProgress != nil, Env: o.env}
	for _, m := range o.mounts {
		req.Mounts = append(req.Mounts, &rayhostv1.Mount{HostPath: m.HostPath, GuestPath: m.GuestPath, ReadOnly: m.ReadOnly})
	}
	stream, err := c.svc.Run(ctx, connect.NewRequest(req))
	if err != nil {
		return fromConnect(err)
	}
	defer stream.Close()
	for stream.Receive() {
		switch ev := stream.Msg().GetEvent().(type) {
		case *rayhostv1.RunResponse_Progress:
			if o.onProgress != nil {
				p := ev.Progress
				o.onProgress(RunProgress{Submitted: int(p.GetSubmitted()), Finished: int(p.GetFinished()),
					Failed: int(p.GetFailed()), Cancelled: int(p.GetCancelled())})
			}
		case *rayhostv1.RunResponse_Log:
			if onLog != nil {
				l := ev.Log
				onLog(LogLine{TaskID: l.GetTaskId(), Function: l.GetFunction(), Host: l.GetHost(), Stream: l.GetStream(), Data: l.GetData()})
			}
		case *rayhostv1.RunResponse_Result:
			if msg := ev.Result.GetError(); msg != "" {
				return fmt.Errorf("%w: the driver failed: %s", ErrTaskFailed, msg)
			}
			return nil
		}
	}
	if err := stream.Err(); err != nil {
		return fromConnect(err)
	}
	return fmt.Errorf("%w: the run ended without a result", ErrHost)
}
