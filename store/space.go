package store

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ErrStoreFull is returned by writes that would take the store past its
// quota (BadgerConfig.Quota) or the filesystem of its directory below its
// free-space reserve (BadgerConfig.Reserve). Reads keep working; writes
// succeed again once objects are deleted (and their space collected) or the
// filesystem has room.
var ErrStoreFull = errors.New("store: full")

const (
	// MinReserve is the smallest free-space reserve a Badger store on disk
	// keeps. Badger writes without being asked: it flushes memtables to
	// level-0 tables, compacts tables (writing the new ones before deleting
	// the old), rewrites value-log files in GC and, when it opens, replays
	// its write-ahead logs and creates a new memtable file and value-log
	// file. Those files are memory-mapped and sparse, so running out of
	// space while writing them is a SIGBUS, not an error. With the options
	// OpenBadger uses (4 MiB memtables, two of them, at most four level-0
	// tables, 1 MiB base tables, 64 MiB value-log files) that work needs at
	// most about one value-log file (a GC rewrite: 64 MiB), two memtable
	// flushes (8 MiB), two concurrent compactions (about 2×20 MiB) and a few
	// MiB at open: 128 MiB covers it with room to spare.
	MinReserve = 128 << 20
	// MaxDefaultReserve caps the default reserve: 5% of the filesystem, at
	// most 1 GiB, at least MinReserve.
	MaxDefaultReserve = 1 << 30
	// minOpenSpace is the free space OpenBadger needs: a memtable file, the
	// level-0 tables of replayed write-ahead logs, the discard file.
	minOpenSpace = 2*memTableSize + 8<<20

	// remeasureBytes and remeasureEvery bound how stale the measured size
	// of the store's directory may get.
	remeasureBytes = 32 << 20
	remeasureEvery = time.Second
	// recordOverhead is what a write costs beyond its value: keys and
	// metadata.
	recordOverhead = 256
	// A probe of the free space serves the admissions of small writes
	// (below probeSmall bytes) for probeEvery, while what it found, less
	// every byte admitted since, stays probeMargin above the reserve: a
	// statfs per small write was 12% of the host's CPU in a loop of tiny
	// puts. Larger writes, and every write near the reserve, probe.
	probeSmall  = 64 << 10
	probeEvery  = 100 * time.Millisecond
	probeMargin = 64 << 20
)

// FreeSpaceFunc reports the bytes available to an unprivileged writer on
// the filesystem holding dir, and the filesystem's total size.
type FreeSpaceFunc func(dir string) (free, total uint64, err error)

// FreeSpace is the real free-space probe (statfs on Linux, macOS and
// FreeBSD). Elsewhere it returns an error, and stores keep no reserve.
func FreeSpace(dir string) (free, total uint64, err error) { return freeSpace(dir) }

// DefaultReserve is the reserve kept on a filesystem of total bytes: 5% of
// it, at most 1 GiB (MaxDefaultReserve), at least MinReserve.
func DefaultReserve(total uint64) int64 {
	return max(MinReserve, min(MaxDefaultReserve, int64(total/20)))
}

// space admits writes against a quota and a free-space reserve.
//
// The size of the store is the space its files take on disk (allocated
// blocks where the OS reports them, so the sparse, preallocated files
// Badger maps count for what they hold), measured by walking the directory
// at most every second or every 32 MiB written, plus the bytes admitted
// since. Badger's own db.Size is not used: it is refreshed once a minute
// and counts the apparent size of the sparse files.
//
// Free space is probed at each admission, less the bytes admitted and not
// yet written (in flight), so concurrent writers cannot all take the same
// last bytes.
type space struct {
	dir     string
	quota   int64 // 0: none
	reserve int64 // 0: none (no probe)
	probe   FreeSpaceFunc
	walk    func(dir string) (int64, error)

	mu       sync.Mutex
	measured int64 // bytes on disk at the last walk
	since    int64 // bytes admitted since the last walk
	at       time.Time
	inflight int64 // bytes admitted and not yet written

	probedAt    time.Time // of the last probe of the free space
	probedAvail int64     // what it found, less the bytes in flight then
	sinceProbe  int64     // bytes admitted since
}

// admit reserves n bytes for a write, or fails with ErrStoreFull. The
// caller calls done(n) once the bytes are written (or dropped).
func (s *space) admit(n int64) error {
	if s == nil {
		return nil
	}
	n = max(n, 0)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkLocked(n+recordOverhead, false); err != nil {
		return err
	}
	s.inflight += n
	s.since += n + recordOverhead
	return nil
}

// check reports whether n more bytes would be admitted now, without
// admitting them.
func (s *space) check(n int64) error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checkLocked(max(n, 0)+recordOverhead, false)
}

func (s *space) checkLocked(n int64, fresh bool) error {
	if s.quota > 0 {
		if !fresh && (s.since >= remeasureBytes || time.Since(s.at) >= remeasureEvery) {
			s.remeasureLocked()
			fresh = true
		}
		if used := s.measured + s.since; used+n > s.quota {
			if !fresh {
				// Deletes and GC may have freed space since the last walk.
				s.remeasureLocked()
				return s.checkLocked(n, true)
			}
			return fmt.Errorf("%w: the store uses %d bytes of its quota of %d, a write of %d does not fit", ErrStoreFull, used, s.quota, n)
		}
	}
	if s.reserve > 0 {
		// The bytes in flight at the probe are subtracted then, once: when
		// they land, the filesystem's free space falls, not the probe's.
		if n < probeSmall && time.Since(s.probedAt) < probeEvery &&
			s.probedAvail-s.sinceProbe-n >= s.reserve+probeMargin {
			s.sinceProbe += n
			return nil // far from the reserve by the last probe
		}
		free, _, err := s.probe(s.dir)
		if err != nil {
			return nil // no probe here: no reserve (OpenBadger warned)
		}
		avail := int64(min(free, 1<<62)) - s.inflight
		s.probedAt, s.probedAvail, s.sinceProbe = time.Now(), avail, 0
		if avail-n < s.reserve {
			return fmt.Errorf("%w: %d bytes free on the filesystem of %s (less %d being written), a write of %d would leave less than the reserve of %d", ErrStoreFull, free, s.dir, s.inflight, n, s.reserve)
		}
		s.sinceProbe = n
	}
	return nil
}

// done releases n bytes admitted by admit once they are written.
func (s *space) done(n int64) {
	if s == nil {
		return
	}
	n = max(n, 0)
	s.mu.Lock()
	s.inflight = max(s.inflight-n, 0)
	s.mu.Unlock()
}

// remeasure walks the directory now (after a reclaim round).
func (s *space) remeasure() {
	if s == nil || s.quota == 0 {
		return
	}
	s.mu.Lock()
	s.remeasureLocked()
	s.mu.Unlock()
}

func (s *space) remeasureLocked() {
	if s.walk == nil {
		return
	}
	used, err := s.walk(s.dir)
	if err != nil {
		return // keep the estimate
	}
	s.measured, s.since, s.at = used, 0, time.Now()
}

// DirUsage is the space the files under dir take on disk, as a store's
// quota counts it: allocated blocks where the system reports them (Badger's
// files are sparse), else apparent sizes. Files removed during the walk (a
// compaction) are skipped.
func DirUsage(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed by a compaction meanwhile
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		total += allocated(info)
		return nil
	})
	return total, err
}

// newSpace makes the admission of a store opened with cfg, or nil for an
// in-memory store. It fails with ErrStoreFull if the filesystem has too
// little room for Badger to open.
func newSpace(cfg BadgerConfig, log *slog.Logger) (*space, error) {
	if cfg.InMemory {
		return nil, nil
	}
	s := &space{dir: cfg.Dir, quota: cfg.Quota, probe: cfg.FreeSpace, walk: DirUsage}
	if s.probe == nil {
		s.probe = FreeSpace
	}
	// The directory may not exist yet: probe the nearest one that does.
	probeDir := filepath.Clean(cfg.Dir)
	for {
		if _, err := os.Stat(probeDir); err == nil || filepath.Dir(probeDir) == probeDir {
			break
		}
		probeDir = filepath.Dir(probeDir)
	}
	free, total, err := s.probe(probeDir)
	switch {
	case err != nil:
		log.Warn("store: cannot probe free space: no free-space reserve is kept, a full disk may crash the host", "dir", cfg.Dir, "err", err)
	case free < minOpenSpace:
		return nil, fmt.Errorf("store: open %q: %w: %d bytes free on its filesystem, Badger needs %d to open; free some space", cfg.Dir, ErrStoreFull, free, minOpenSpace)
	default:
		s.reserve = cfg.Reserve
		if s.reserve == 0 {
			s.reserve = DefaultReserve(total)
		}
	}
	if s.quota > 0 {
		s.mu.Lock()
		s.remeasureLocked()
		s.mu.Unlock()
	}
	if s.quota == 0 && s.reserve == 0 {
		return nil, nil
	}
	return s, nil
}
