//go:build !(linux || darwin || freebsd)

package store

import (
	"errors"
	"io/fs"
)

// errNoProbe: this OS has no free-space probe here; stores keep no reserve
// (the quota still holds).
var errNoProbe = errors.New("store: no free-space probe on this OS")

func freeSpace(string) (free, total uint64, err error) { return 0, 0, errNoProbe }

// allocated is the apparent size of a file (an overestimate for sparse
// files, so the quota errs on the safe side).
func allocated(info fs.FileInfo) int64 { return info.Size() }
