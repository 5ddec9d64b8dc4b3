package host

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
	"github.com/rayhost/rayhost/internal/confine"
)

// confinementState is what the last worker to start reported of its OS
// confinement.
type confinementState struct {
	mu     sync.Mutex
	layers []confine.Layer
	warned string // the missing layers last logged
}

// workerOptions: a worker reads the modules and writes the compilation
// cache; tasks' mounts are granted per task, always within AllowedDirs, so
// a confined worker may read and write those roots and nothing else.
func (h *Host) workerOptions() WorkerOptions {
	return WorkerOptions{
		CacheDir:  h.cacheDir,
		Confine:   !h.cfg.DisableWorkerConfinement,
		ReadDirs:  []string{filepath.Join(h.cfg.DataDir, "modules")},
		WriteDirs: append([]string{h.cacheDir}, h.cfg.AllowedDirs...),
	}
}

// noteConfinement records the layers a worker reported with Ready ("pid" or
// "pid\n" + JSON) and logs a warning for missing ones when they change.
func (h *Host) noteConfinement(ready []byte) {
	_, report, ok := bytes.Cut(ready, []byte{'\n'})
	if !ok {
		return // an in-process worker: nothing to report
	}
	var layers []confine.Layer
	if err := json.Unmarshal(report, &layers); err != nil {
		h.log.Warn("worker sent an unreadable confinement report", "err", err)
		return
	}
	var missing []string
	for _, l := range layers {
		if !l.Active {
			missing = append(missing, l.Name+": "+l.Detail)
		}
	}
	summary := strings.Join(missing, "; ")
	h.conf.mu.Lock()
	h.conf.layers = layers
	warn := summary != h.conf.warned
	h.conf.warned = summary
	h.conf.mu.Unlock()
	if warn && summary != "" {
		h.log.Warn("worker confinement: some layers are not in force", "missing", summary)
	}
}

func (h *Host) confinementProto() []*rayhostv1.ConfinementLayer {
	h.conf.mu.Lock()
	defer h.conf.mu.Unlock()
	out := make([]*rayhostv1.ConfinementLayer, len(h.conf.layers))
	for i, l := range h.conf.layers {
		out[i] = &rayhostv1.ConfinementLayer{Name: l.Name, Active: l.Active, Detail: l.Detail}
	}
	return out
}
