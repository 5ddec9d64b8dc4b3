package owner

import (
	"path/filepath"

	"github.com/rayhost/rayhost/host/internal/launch"

	rayhostv1 "github.com/rayhost/rayhost/gen/rayhost/v1"
)

// workerOptions: a worker reads the modules and writes the compilation
// cache; tasks' mounts are granted per task, always within AllowedDirs, so
// a confined worker may read and write those roots and nothing else.
func (wp *workerRole) workerOptions() launch.WorkerOptions {
	h := wp.o
	return launch.WorkerOptions{
		CacheDir:  h.cacheDir,
		Confine:   !h.cfg.DisableWorkerConfinement,
		ReadDirs:  []string{filepath.Join(h.cfg.DataDir, "modules")},
		WriteDirs: append([]string{h.cacheDir}, h.cfg.AllowedDirs...),
	}
}

// noteConfinement records the layers a worker reported with Ready and logs
// a warning for missing ones when they change.
func (wp *workerRole) noteConfinement(ready []byte) {
	h := wp.o
	missing, changed, err := h.conf.Note(ready)
	if err != nil {
		h.log.Warn("worker sent an unreadable confinement report", "err", err)
		return
	}
	if changed && missing != "" {
		h.log.Warn("worker confinement: some layers are not in force", "missing", missing)
	}
}

func (wp *workerRole) confinementProto() []*rayhostv1.ConfinementLayer {
	h := wp.o
	layers := h.conf.Layers()
	out := make([]*rayhostv1.ConfinementLayer, len(layers))
	for i, l := range layers {
		out[i] = &rayhostv1.ConfinementLayer{Name: l.Name, Active: l.Active, Detail: l.Detail}
	}
	return out
}
