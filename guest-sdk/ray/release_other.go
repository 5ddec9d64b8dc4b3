//go:build !wasip1

package ray

import "github.com/rayhost/rayhost/internal/ids"

// Natively (local mode) nothing is counted: refs live as long as the
// local session.
func track(ids.ObjectID, int32) *handle { return nil }

func releaseNow(*handle) {}

func flushReleases(bool) {}

func counted(*handle) bool { return false }
