//go:build linux

package worker

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// mapping is one line of /proc/self/maps (and its VmFlags from smaps).
type mapping struct {
	start, end uintptr
	perms      string
	flags      string
	rssKB      int // resident, from its Rss line
}

// mappingAt returns the mapping that holds addr, if any.
func mappingAt(t *testing.T, addr uintptr) (mapping, bool) {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	var cur mapping
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if fields := strings.Fields(line); len(fields) >= 2 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			if found {
				return cur, true
			}
			lo, hi, _ := strings.Cut(fields[0], "-")
			s, err1 := strconv.ParseUint(lo, 16, 64)
			e, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 != nil || err2 != nil {
				continue
			}
			cur = mapping{start: uintptr(s), end: uintptr(e), perms: fields[1]}
			found = cur.start <= addr && addr < cur.end
			continue
		}
		if found && strings.HasPrefix(line, "VmFlags:") {
			cur.flags = strings.TrimSpace(strings.TrimPrefix(line, "VmFlags:"))
		}
		if found && strings.HasPrefix(line, "Rss:") {
			if f := strings.Fields(line); len(f) >= 2 {
				cur.rssKB, _ = strconv.Atoi(f[1])
			}
		}
	}
	return cur, found
}

// TestTrim: the alignment of a reservation, wherever the kernel put the
// raw mapping: the head and tail given back add up to the extra alignment
// reserved, and the aligned part starts on the boundary.
func TestTrim(t *testing.T) {
	const page, align = 4096, 2 << 20
	for _, tc := range []struct {
		name        string
		start, size uintptr
		head, tail  uintptr
	}{
		{"already aligned", 7 * align, 3 * align, 0, align},
		{"a page past a boundary", 7*align + page, 3 * align, align - page, page},
		{"a page before a boundary", 7*align - page, 3 * align, page, align - page},
		{"a size that is no multiple of the alignment", 5*align + 3*page, align + 17*page, align - 3*page, 3 * page},
	} {
		t.Run(tc.name, func(t *testing.T) {
			head, aligned, tail := trim(tc.start, tc.size, align)
			if head != tc.head || tail != tc.tail {
				t.Fatalf("head %#x tail %#x, want %#x, %#x", head, tail, tc.head, tc.tail)
			}
			if aligned%align != 0 || aligned != tc.start+head || head+tc.size+tail != tc.size+align {
				t.Fatalf("aligned %#x: not the boundary after %#x, or the parts do not add up", aligned, tc.start)
			}
		})
	}
}

func TestGuestMemoryReservation(t *testing.T) {
	const maxBytes = 64 << 20
	lm := mmapAllocator(0, maxBytes)
	m, ok := lm.(*mmapMemory)
	if !ok {
		t.Fatalf("allocator gave %T, want *mmapMemory", lm)
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(m.buf)))
	if base%hugePage != 0 {
		t.Errorf("reservation starts at %#x, not on a 2 MiB boundary", base)
	}
	if len(m.buf) != maxBytes {
		t.Fatalf("reservation of %d bytes, want %d", len(m.buf), maxBytes)
	}

	// Nothing beyond the reservation stays mapped from it: the mapping at
	// its last byte ends where it ends.
	if mp, ok := mappingAt(t, base+maxBytes-1); !ok || mp.end != base+maxBytes {
		t.Errorf("mapping at the reservation's end: %+v (found %v), want one ending at %#x", mp, ok, base+maxBytes)
	}

	// Nor past it: the tail of the alignment was given back (a leftover
	// would be an inaccessible mapping of its own starting there, not
	// advised, so never merged with the reservation).
	if mp, ok := mappingAt(t, base+maxBytes); ok && mp.start == base+maxBytes && mp.perms == "---p" && !strings.Contains(" "+mp.flags+" ", " hg ") {
		t.Errorf("the alignment's tail stayed mapped: %+v", mp)
	}

	// Grown in Wasm pages, zeroed, writable, contents kept.
	const wasmPage = 64 << 10
	b := lm.Reallocate(3 * wasmPage)
	if len(b) != 3*wasmPage {
		t.Fatalf("Reallocate gave %d bytes", len(b))
	}
	for i := range b {
		if b[i] != 0 {
			t.Fatalf("byte %d of new memory is %d", i, b[i])
		}
	}
	b[0], b[len(b)-1] = 1, 2
	b = lm.Reallocate(40 * wasmPage)
	if len(b) != 40*wasmPage || b[0] != 1 || b[3*wasmPage-1] != 2 || b[len(b)-1] != 0 {
		t.Fatalf("grown memory lost its contents or is not zero: len %d", len(b))
	}
	b[len(b)-1] = 3
	if lm.Reallocate(maxBytes+wasmPage) != nil {
		t.Error("Reallocate past the maximum succeeded")
	}

	// Committed memory is read-write, the rest inaccessible; both advised
	// for huge pages where the kernel has them.
	rw, ok := mappingAt(t, base)
	if !ok || !strings.HasPrefix(rw.perms, "rw") || rw.end != base+40*wasmPage {
		t.Errorf("committed mapping %+v, want rw up to %#x", rw, base+40*wasmPage)
	}
	rest, ok := mappingAt(t, base+40*wasmPage)
	if !ok || !strings.HasPrefix(rest.perms, "---") {
		t.Errorf("uncommitted mapping %+v, want no access", rest)
	}
	if thp, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled"); err == nil && !strings.Contains(string(thp), "[never]") {
		for _, mp := range []mapping{rw, rest} {
			if !strings.Contains(" "+mp.flags+" ", " hg ") {
				t.Errorf("mapping %#x-%#x not advised for huge pages: VmFlags %q", mp.start, mp.end, mp.flags)
			}
		}
	}

	// Resident memory stays within what the guest committed, however it
	// touches it: every byte of the committed part, nothing of the rest.
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	rw, _ = mappingAt(t, base)
	rest, _ = mappingAt(t, base+40*wasmPage)
	if rw.rssKB*1024 > 40*wasmPage || rest.rssKB != 0 {
		t.Errorf("resident: %d KiB committed (of %d KiB), %d KiB beyond; want at most the committed size, nothing beyond",
			rw.rssKB, 40*wasmPage/1024, rest.rssKB)
	}

	lm.Free()
	if mp, ok := mappingAt(t, base); ok && mp.start <= base && base < mp.end && (mp.perms == "---p" || mp.perms == "rw-p") && strings.Contains(mp.flags, "hg") {
		t.Errorf("memory still mapped after Free: %+v", mp)
	}
}
