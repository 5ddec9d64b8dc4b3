package launch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/rayhost/rayhost/internal/confine"
)

// Confinement is what the last worker to start reported of its OS
// confinement. Its methods are safe for concurrent use.
type Confinement struct {
	mu     sync.Mutex
	layers []confine.Layer
	warned string // the missing layers last reported as changed
}

// Note records the layers a worker reported with Ready ("pid", from an
// in-process worker, which reports none; or "pid\n" + JSON). It returns a
// summary of the layers not in force and whether it differs from the last
// one (so the caller warns once per change).
func (c *Confinement) Note(ready []byte) (missing string, changed bool, err error) {
	_, report, ok := bytes.Cut(ready, []byte{'\n'})
	if !ok {
		return "", false, nil // an in-process worker: nothing to report
	}
	var layers []confine.Layer
	if err := json.Unmarshal(report, &layers); err != nil {
		return "", false, fmt.Errorf("%w: %v", ErrBadReport, err)
	}
	var parts []string
	for _, l := range layers {
		if !l.Active {
			parts = append(parts, l.Name+": "+l.Detail)
		}
	}
	missing = strings.Join(parts, "; ")
	c.mu.Lock()
	defer c.mu.Unlock()
	c.layers = layers
	changed = missing != c.warned
	c.warned = missing
	return missing, changed, nil
}

// Layers are the layers the last worker reported.
func (c *Confinement) Layers() []confine.Layer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.layers)
}
