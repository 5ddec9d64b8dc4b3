package modules

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/rayhost/rayhost/internal/abi"
)

// Descriptions are persisted beside their module file, so that a module
// registered again after a restart (or looked up by digest) is not
// described again: describing runs the guest in a worker (compiling,
// instantiating, its init), the largest part of a registration.
//
// A persisted description is a file the host alone writes (workers may
// read the module directory, never write it), named by the module's full
// sha256 digest and holding that digest, so a description can only be
// read back for the bytes that were described. It is read like a fresh
// description from a worker (which is guest output, untrusted): decoded
// and checked by decodeDescription, after the envelope's checks (format,
// ABI version, digest, checksum, size). Anything amiss (a truncated or
// corrupted file, one copied from another module, one of an older
// format) is removed and the module is described again.

// descFormat is the layout of a persisted description; bump it when the
// host reads a description differently, so older files are described
// again rather than misread.
const descFormat = 1

// MaxDescriptionBytes bounds a persisted description: a larger one is not
// persisted (the module is described on every restart), and a larger file
// is not read. With one file per module file, the directory grows by at
// most this much per module.
const MaxDescriptionBytes = 1 << 20

// descEnvelope is a persisted description.
type descEnvelope struct {
	Format int             `json:"format"`
	ABI    int32           `json:"abi"`    // abi.Version of the host that described it
	Digest string          `json:"digest"` // the module's sha256, as its file name
	Sum    string          `json:"sha256"` // of Digest and Desc, see descSum
	Desc   json.RawMessage `json:"description"`
}

// errStaleDescription: a persisted description that is not to be used.
var errStaleDescription = errors.New("modules: persisted description refused")

// descPath is the persisted description of the module with digest.
func (r *Registry) descPath(digest string) string {
	return filepath.Join(r.cfg.Dir, digest+".desc.json")
}

// decodeDescription reads a module's description (from a worker, or read
// back from disk) and checks it: undecodable, reporting a registration
// mistake, or listing a function twice or without a name, it is refused.
func decodeDescription(data []byte) (abi.Description, error) {
	var d abi.Description
	if err := json.Unmarshal(data, &d); err != nil {
		return d, fmt.Errorf("%w: undecodable description: %v", ErrInvalidModule, err)
	}
	if d.Error != "" {
		return d, fmt.Errorf("%w: %s", ErrInvalidModule, d.Error)
	}
	seen := make(map[string]bool, len(d.Functions))
	for _, f := range d.Functions {
		switch {
		case f.Name == "":
			return d, fmt.Errorf("%w: the description lists a function without a name", ErrInvalidModule)
		case seen[f.Name]:
			return d, fmt.Errorf("%w: the description lists function %q twice", ErrInvalidModule, f.Name)
		case f.NumArgs < -1 || f.NumReturns < 0: // num_args −1: variadic (ABI.md)
			return d, fmt.Errorf("%w: function %q: a negative count", ErrInvalidModule, f.Name)
		}
		seen[f.Name] = true
	}
	return d, nil
}

// readDescription reads back the persisted description of the module with
// digest. It reports false if there is none or it was refused (then
// removed).
func (r *Registry) readDescription(digest string) (abi.Description, bool) {
	path := r.descPath(digest)
	f, err := os.Open(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			r.cfg.Logger.Warn("reading a module's description", "digest", digest, "err", err)
		}
		return abi.Description{}, false
	}
	b, err := io.ReadAll(io.LimitReader(f, 2*MaxDescriptionBytes+1))
	f.Close()
	if err == nil {
		var d abi.Description
		if d, err = checkEnvelope(b, digest); err == nil {
			return d, true
		}
	}
	r.cfg.Logger.Warn("a module's persisted description is refused; describing the module again", "digest", digest, "err", err)
	_ = os.Remove(path)
	return abi.Description{}, false
}

// checkEnvelope checks a persisted description of the module with digest
// and decodes it.
func checkEnvelope(b []byte, digest string) (abi.Description, error) {
	if len(b) > 2*MaxDescriptionBytes {
		return abi.Description{}, fmt.Errorf("%w: %d bytes or more", errStaleDescription, len(b))
	}
	var env descEnvelope
	if err := json.Unmarshal(b, &env); err != nil {
		return abi.Description{}, fmt.Errorf("%w: %v", errStaleDescription, err)
	}
	switch {
	case env.Format != descFormat:
		return abi.Description{}, fmt.Errorf("%w: format %d, this host reads %d", errStaleDescription, env.Format, descFormat)
	case env.ABI != abi.Version:
		return abi.Description{}, fmt.Errorf("%w: described by a host of ABI v%d, this one is v%d", errStaleDescription, env.ABI, abi.Version)
	case env.Digest != digest:
		return abi.Description{}, fmt.Errorf("%w: it describes module %.12s", errStaleDescription, env.Digest)
	case env.Sum != descSum(env.Digest, env.Desc):
		return abi.Description{}, fmt.Errorf("%w: checksum mismatch", errStaleDescription)
	case len(env.Desc) > MaxDescriptionBytes:
		return abi.Description{}, fmt.Errorf("%w: %d bytes", errStaleDescription, len(env.Desc))
	}
	d, err := decodeDescription(env.Desc)
	if err != nil {
		return abi.Description{}, fmt.Errorf("%w: %w", errStaleDescription, err)
	}
	return d, nil
}

// descSum is the checksum of a persisted description: of the digest it is
// for and the description, so neither can change alone (a truncated,
// corrupted or re-keyed file). It is no signature: whoever may write the
// module directory may write a consistent file, which is why a description
// read back is checked as a fresh one is. Only the host writes there.
func descSum(digest string, desc []byte) string {
	h := sha256.New()
	h.Write([]byte(digest))
	h.Write([]byte{0})
	h.Write(desc)
	return hex.EncodeToString(h.Sum(nil))
}

// writeDescription persists desc, the description of the module with
// digest as the worker gave it, through a temporary file (the path is
// absent or whole). A failure costs a describe after the next restart.
func (r *Registry) writeDescription(digest string, desc []byte) {
	// Compact, and written without escaping, as the checksum is of what is
	// written.
	var compact bytes.Buffer
	if err := json.Compact(&compact, desc); err != nil || compact.Len() > MaxDescriptionBytes {
		return
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(descEnvelope{Format: descFormat, ABI: abi.Version, Digest: digest,
		Sum: descSum(digest, compact.Bytes()), Desc: json.RawMessage(compact.Bytes())}); err != nil {
		r.cfg.Logger.Warn("persisting a module's description", "digest", digest, "err", err)
		return
	}
	if err := r.store(r.descPath(digest), buf.Bytes()); err != nil {
		r.cfg.Logger.Warn("persisting a module's description", "digest", digest, "err", err)
	}
}
