package ipc

import (
	"testing"

	"golang.org/x/sys/unix"
)

// The ways a large value can go from the host's memory into a guest's
// (docs/RATIONALE.md, "A large reply is read from the socket straight into
// guest memory"): dst is the guest's memory, touched before, as a guest's
// heap is; src is the value in the host's memory.
//
//	go test -run '^$' -bench BenchmarkTransfer -benchtime 20x ./internal/ipc/

const transferBytes = 64 << 20

func transferBuffers(b *testing.B) (src, dst []byte) {
	src, dst = make([]byte, transferBytes), make([]byte, transferBytes)
	for i := range src {
		src[i], dst[i] = byte(i), 1
	}
	b.SetBytes(transferBytes)
	return src, dst
}

// BenchmarkTransferSocketIntoGuest: through the socket, read straight into
// the guest's memory (what the worker does since).
func BenchmarkTransferSocketIntoGuest(b *testing.B) {
	host, worker := socketPair(b)
	src, dst := transferBuffers(b)
	for b.Loop() {
		go func() { _ = host.WriteReply(&Reply{Seq: 1}, src) }()
		if _, n, err := worker.ReadHeader(); err != nil || n != 2+len(src) {
			b.Fatal(n, err)
		}
		var head [2]byte
		if worker.ReadFull(head[:]) != nil || worker.ReadFull(dst) != nil {
			b.Fatal("read")
		}
	}
}

// BenchmarkTransferSocketViaBuffer: through the socket into a new buffer of
// the worker's, then copied into the guest's memory (what it did before).
func BenchmarkTransferSocketViaBuffer(b *testing.B) {
	host, worker := socketPair(b)
	src, dst := transferBuffers(b)
	for b.Loop() {
		go func() { _ = host.WriteReply(&Reply{Seq: 1}, src) }()
		_, p, err := worker.Read(nil)
		if err != nil {
			b.Fatal(err)
		}
		copy(dst, p[2:])
	}
}

// BenchmarkTransferMemfd: a sealed memfd per value (the host writes it,
// the worker reads it into the guest's memory), the shared-memory segment
// of the sketch, without its file-descriptor passing.
func BenchmarkTransferMemfd(b *testing.B) {
	src, dst := transferBuffers(b)
	for b.Loop() {
		fd, err := unix.MemfdCreate("object", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			b.Skip("memfd_create:", err)
		}
		if n, err := unix.Pwrite(fd, src, 0); err != nil || n != len(src) {
			b.Fatal(n, err)
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_WRITE|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW); err != nil {
			b.Fatal(err)
		}
		for off := 0; off < len(dst); {
			n, err := unix.Pread(fd, dst[off:], int64(off))
			if err != nil || n == 0 {
				b.Fatal(n, err)
			}
			off += n
		}
		unix.Close(fd)
	}
}

// BenchmarkTransferMemmove: one copy in user space, the floor.
func BenchmarkTransferMemmove(b *testing.B) {
	src, dst := transferBuffers(b)
	for b.Loop() {
		copy(dst, src)
	}
}
