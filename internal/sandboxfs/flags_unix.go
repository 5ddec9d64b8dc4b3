//go:build unix

package sandboxfs

import "syscall"

// Flags os does not name.
const (
	oDirectory = syscall.O_DIRECTORY
	oNofollow  = syscall.O_NOFOLLOW
	oDsync     = syscall.O_DSYNC
)
