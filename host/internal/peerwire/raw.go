package peerwire

import (
	"net/http"
	"strconv"

	"github.com/rayhost/rayhost/gen/rayhost/v1/rayhostv1connect"
)

// The peer protocol's raw routes: plain HTTP, not Connect, for bytes that
// a protobuf message per chunk would only copy (docs/CLUSTER.md, "Peer
// protocol"). They live under the PeerService's path, so that the guard
// lets only members call them, and carry VersionHeader both ways.

// PullBytesPath is the route a host pulls an object's bytes from a holder
// with: GET PullBytesPath?id=<object ID>. The answer to a pull that is
// served is 200 OK with CodecHeader and a Content-Length of the object's
// size, then the bytes; a holder that fails part way ends the stream
// short, which the puller sees as too few bytes. Refusals: 404 Not Found
// (the object's bytes are not held there), 400 Bad Request, 405 Method
// Not Allowed, 412 Precondition Failed (another peer protocol version),
// 500 (the holder's store failed), each with a text body.
const PullBytesPath = "/" + rayhostv1connect.PeerServiceName + "/PullBytes"

// CodecHeader carries the codec of the object a PullBytesPath answer
// carries (abi.Codec's name).
const CodecHeader = "Rayhost-Codec"

// CheckRawVersion answers a raw call that does not carry this host's
// version with 412 Precondition Failed and reports false; else it sets
// this host's version on the answer and reports true.
func CheckRawVersion(w http.ResponseWriter, r *http.Request) bool {
	w.Header().Set(VersionHeader, strconv.Itoa(Version))
	if err := CheckVersion(r.Header, "the caller"); err != nil {
		http.Error(w, err.Error(), http.StatusPreconditionFailed)
		return false
	}
	return true
}
