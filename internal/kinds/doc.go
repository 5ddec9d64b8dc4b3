// Package kinds holds the error kinds both sides of rayhost's API share:
// the sentinel errors a user matches with errors.Is (the same values in
// package client and in the guest SDK), the *TaskError of a failed task,
// and the API classes the host's own sentinels belong to, which its API
// edge turns into Connect codes and package client turns back.
//
// It imports no Connect and nothing of the host: guests link it
// (GOOS=wasip1 GOARCH=wasm), so does the client, and so does the server.
// The mapping of classes and task kinds to Connect codes lives at the
// host's API edge (host/internal/edge), the one place it is made, and its
// mirror in package client.
package kinds
