package abi

import (
	"bytes"
	"encoding/json"

	"github.com/rayhost/rayhost/internal/ids"
)

// MaxConcurrency bounds SubmitRequest.MaxConcurrency: calls of one actor
// that may run at once.
const MaxConcurrency = 1024

// actorKey is how an actor handle starts inside a JSON value (§5, Actors:
// {"actor_id": hex TaskID, "owner": addr}).
var actorKey = []byte(`"actor_id"`)

// ActorRef is the object an actor handle counts as a reference to: the
// creation's one return (index 1 of the actor's ID, what Ready reads).
// The host counts handles as refs to it, so an actor lives while its
// creation's return is referenced (ABI.md §5, "Actor lifetime").
func ActorRef(actor ids.TaskID) ids.ObjectID { return actor.Return(0) }

// NestedActors returns the actor handles a value contains, once per
// occurrence, in the order they appear, each as a Ref to its ActorRef
// (Owner: the handle's owner); in a CBOR value, the TagActor items.
// Values of other codecs, and JSON values that
// never mention "actor_id", contain none and cost one scan.
func NestedActors(v Value) []Ref {
	if v.Codec == CodecCBOR {
		return cborRefs(v.Data, TagActor)
	}
	if v.Codec != CodecJSON || !bytes.Contains(v.Data, actorKey) {
		return nil
	}
	var tree any
	if err := json.Unmarshal(v.Data, &tree); err != nil {
		return nil
	}
	var out []Ref
	var walk func(x any)
	walk = func(x any) {
		switch x := x.(type) {
		case map[string]any:
			if s, ok := x["actor_id"].(string); ok {
				if id, err := ids.ParseTaskID(s); err == nil {
					owner, _ := x["owner"].(string)
					out = append(out, Ref{ID: ActorRef(id), Owner: owner})
				}
			}
			for _, y := range x {
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		}
	}
	walk(tree)
	return out
}
