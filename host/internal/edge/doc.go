// Package edge is the host's API edge: the Connect handlers of the
// TaskService that clients (package client, the CLI, curl) call. It parses
// and checks requests, calls the host through the small Host interface it
// defines, and builds the responses.
//
// It is the one place where errors become Connect codes (CodeOf,
// ToConnect; a failed task's object by its kind, with the TaskError
// attached as a detail). The host's own sentinels belong to an API class of
// internal/kinds (kinds.Classed), which is how the mapping knows them
// without importing them; package client maps the codes back.
//
// Every call passes its interceptor first (Edge.Handler): it reads the
// caller's session (the Rayhost-Session header; a malformed one is
// invalid_argument) and principal (package guard's), and begins the call
// with the host (Host.BeginCall), which keeps the session alive while the
// call runs and names who holds the refs it makes (Caller.Holder).
// Release, KeepAlive and EndSession act on the caller's own session only.
//
// It also admits drivers (at most Config.MaxDrivers at once, and
// MaxDriversPerClient from one client address) and keeps a driver's output
// for the client watching it (Job).
package edge
