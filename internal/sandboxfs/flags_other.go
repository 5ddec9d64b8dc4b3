//go:build !unix

package sandboxfs

// Flags os does not name: none here.
const (
	oDirectory = 0
	oNofollow  = 0
	oDsync     = 0
)
