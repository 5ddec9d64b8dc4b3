package ray

import (
	"bytes"
	"runtime"
	"strconv"
)

// goroutineID is the number runtime.Stack prints in its first line,
// "goroutine 18 [running]:". Go offers no other way to tell goroutines
// apart; the format has been stable since Go 1.0.
func goroutineID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return id
}
