//go:build linux

package worker

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// mmapAllocator backs each guest's linear memory with address space reserved
// up to its maximum and committed page by page as the guest grows it.
// wazero's default grows a Go slice, copying the whole memory each time it
// outgrows its capacity: a guest that grew to 1 GiB spent ≈ 6 s copying
// (16.5 s in all for make + copy of 1 GiB, against 3.3 s here). Reserved,
// untouched pages cost neither RAM nor Go heap, and Free returns the memory
// to the system at once.
//
// The reservation starts on a 2 MiB boundary and is advised for transparent
// huge pages (MADV_HUGEPAGE; Linux grants them only to advised memory unless
// configured otherwise), so the kernel maps a guest's memory 2 MiB at a time
// as the guest first touches it instead of a fault per 4 KiB page. On a
// virtual machine whose page faults are dear that is the larger part of a
// large Get (the guest's fresh slice) and of any guest that grows its heap:
// see docs/RATIONALE.md, "Guest memory in huge pages". Only committed memory
// (what the guest's memory.grow reached) is readable and writable, so a huge
// page never maps memory beyond the guest's size.
var mmapAllocator = experimental.MemoryAllocatorFunc(func(capacity, maximum uint64) experimental.LinearMemory {
	size := roundUp(max(maximum, capacity))
	if size == 0 || size > 1<<33 {
		return &sliceMemory{} // wazero never accepts nil
	}
	buf, err := reserve(uintptr(size))
	if err != nil {
		return &sliceMemory{}
	}
	return &mmapMemory{buf: buf}
})

// hugePage is the size and alignment of a transparent huge page: the
// kernel's (hpage_pmd_size), else 2 MiB (x86-64, and arm64 with 4 KiB
// pages).
var hugePage = func() uintptr {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
	if err != nil {
		return 2 << 20
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n == 0 || n&(n-1) != 0 || n > 1<<30 {
		return 2 << 20
	}
	return uintptr(n)
}()

// trim splits a mapping of size+align bytes at start into the part before
// the first align boundary (head bytes), size bytes from that boundary, and
// what is left after them (tail bytes). align is a power of two and start
// and size are multiples of the page size.
func trim(start, size, align uintptr) (head, aligned, tail uintptr) {
	aligned = (start + align - 1) &^ (align - 1)
	head = aligned - start
	return head, aligned, align - head
}

// reserve maps size bytes of inaccessible address space starting on a
// hugePage boundary and advises it for huge pages (advice a kernel without
// them refuses, which changes nothing else).
func reserve(size uintptr) ([]byte, error) {
	const prot, flags = unix.PROT_NONE, unix.MAP_PRIVATE | unix.MAP_ANON | unix.MAP_NORESERVE
	raw, err := unix.MmapPtr(-1, 0, nil, size+hugePage, prot, flags)
	if err != nil {
		return nil, err
	}
	head, _, tail := trim(uintptr(raw), size, hugePage)
	// Give back what lies before the boundary and past the end; if the
	// kernel refuses (no map entry left to split), give back all of it.
	var herr, terr error
	if head > 0 {
		herr = unix.MunmapPtr(raw, head)
	}
	if tail > 0 {
		terr = unix.MunmapPtr(unsafe.Add(raw, head+size), tail)
	}
	if herr != nil || terr != nil {
		if herr == nil && head > 0 {
			raw, head = unsafe.Add(raw, head), 0
		}
		if terr == nil {
			tail = 0
		}
		_ = unix.MunmapPtr(raw, head+size+tail)
		return nil, errors.Join(herr, terr)
	}
	buf := unsafe.Slice((*byte)(unsafe.Add(raw, head)), size)
	_ = unix.Madvise(buf, unix.MADV_HUGEPAGE)
	return buf, nil
}

// sliceMemory is a plain Go slice, for the cases mmap does not cover (an
// empty memory, or a failed reservation).
type sliceMemory struct{ buf []byte }

func (m *sliceMemory) Reallocate(size uint64) []byte {
	if size > 1<<33 {
		return nil
	}
	if uint64(cap(m.buf)) < size {
		grown := make([]byte, size, max(size, 2*uint64(cap(m.buf))))
		copy(grown, m.buf)
		m.buf = grown
	}
	m.buf = m.buf[:size]
	return m.buf
}

func (m *sliceMemory) Free() { m.buf = nil }

type mmapMemory struct {
	buf       []byte // the whole reservation
	committed int    // bytes readable and writable from the start
}

func roundUp(n uint64) uint64 {
	page := uint64(unix.Getpagesize())
	return (n + page - 1) / page * page
}

func (m *mmapMemory) Reallocate(size uint64) []byte {
	if size > uint64(len(m.buf)) {
		return nil
	}
	if want := int(roundUp(size)); want > m.committed {
		if err := unix.Mprotect(m.buf[m.committed:want], unix.PROT_READ|unix.PROT_WRITE); err != nil {
			return nil
		}
		m.committed = want
	}
	return m.buf[:size:size]
}

func (m *mmapMemory) Free() {
	if m.buf != nil {
		_ = unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(m.buf)), uintptr(len(m.buf)))
		m.buf = nil
	}
}
