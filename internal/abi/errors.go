package abi

import "encoding/json"

// ErrorKind classifies why a task failed. It is part of the ABI (it travels
// inside CodecError values) and of the public API (clients map it to
// sentinel errors).
type ErrorKind string

const (
	ErrorApplication ErrorKind = "application" // the function returned an error
	ErrorPanic       ErrorKind = "panic"       // the function panicked
	ErrorBadRequest  ErrorKind = "bad_request" // unknown function, undecodable arguments
	ErrorTrap        ErrorKind = "trap"        // the Wasm instance trapped (out of memory, stack overflow…)
	ErrorWorkerDied  ErrorKind = "worker_died" // the worker process died while running the task
	ErrorCancelled   ErrorKind = "cancelled"   // the task was cancelled
	ErrorDependency  ErrorKind = "dependency"  // an ObjectRef argument failed; Cause says why
	ErrorInfeasible  ErrorKind = "infeasible"  // no host can ever satisfy the task's resources
	ErrorHost        ErrorKind = "host"        // the host could not run the task
	// ErrorEndOfStream marks the end of a generator's items; it is never a
	// task's failure.
	ErrorEndOfStream ErrorKind = "end_of_stream"
	ErrorTimeout     ErrorKind = "timeout"       // the task ran past its wall-clock timeout
	ErrorOutOfMemory ErrorKind = "out_of_memory" // the guest exceeded its memory limit
	ErrorLimit       ErrorKind = "limit"         // a size or count limit was exceeded
	ErrorActorDied   ErrorKind = "actor_died"    // the actor is dead (killed, or out of restarts)
	ErrorObjectLost  ErrorKind = "object_lost"   // every copy is gone and it cannot be rebuilt
	ErrorOwnerDied   ErrorKind = "owner_died"    // the host that owns the object is gone
	// ErrorObjectFreed: the object was freed (nothing referenced it any
	// more); the ref that read it was stale or forged.
	ErrorObjectFreed ErrorKind = "object_freed"
	// ErrorPermissionDenied: the task asked for a capability it may not
	// have (a grant its parent does not hold), or its guest broke the ABI's
	// rules (a child or object ID outside its own).
	ErrorPermissionDenied ErrorKind = "permission_denied"
)

// TaskError is the value of the objects of a failed task.
type TaskError struct {
	Kind     ErrorKind `json:"kind"`
	TaskID   string    `json:"task_id,omitempty"`
	Function string    `json:"function,omitempty"`
	Host     string    `json:"host,omitempty"`
	Attempt  uint32    `json:"attempt"`
	Message  string    `json:"message"`
	// Code is an application-defined error code (ray.WithCode), which
	// RetryExceptions can match.
	Code  string     `json:"code,omitempty"`
	Stack string     `json:"stack,omitempty"`
	Cause *TaskError `json:"cause,omitempty"`
}

// Encode returns the CodecError value of e.
func (e *TaskError) Encode() Value {
	b, _ := json.Marshal(e) // a struct of strings and numbers always marshals
	return Value{Codec: CodecError, Data: b}
}

// DecodeTaskError decodes a CodecError value. Bytes that do not decode still
// give a usable error.
func DecodeTaskError(data []byte) *TaskError {
	var e TaskError
	if err := json.Unmarshal(data, &e); err != nil || e.Kind == "" {
		return &TaskError{Kind: ErrorHost, Message: "undecodable task error: " + string(data)}
	}
	return &e
}
