package confine

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"github.com/landlock-lsm/go-landlock/landlock"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/psx"
)

// Apply confines the calling process (all its threads) and reports each
// layer. Call it once, before any guest is loaded: the filters cannot be
// lifted, and the seccomp filter forbids what setting them up needs.
func Apply(opts Options) []Layer {
	env := envLayer()
	userns := userNSLayer()
	netns := netNSLayer() // before seccomp and Landlock: it needs a netlink socket
	rl := rlimitLayer()
	caps := capsLayer()
	ll := landlockLayer(opts)
	nnp := nnpLayer()
	sc := seccompLayer()
	return []Layer{env, nnp, caps, userns, netns, rl, ll, sc}
}

// userNSLayer: the host starts the worker in a user namespace of its own,
// as a non-root uid mapped to the host's uid, so exec leaves it no
// capabilities, and capabilities it may gain inside count for nothing
// outside.
func userNSLayer() Layer {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return Layer{Name: LayerUserNS, Detail: "cannot read /proc/self/uid_map: " + err.Error()}
	}
	f := strings.Fields(string(b))
	if len(f) >= 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295" {
		return Layer{Name: LayerUserNS, Detail: "the host's user namespace (the host could not create one: see the host log)"}
	}
	if len(f) >= 3 {
		return Layer{Name: LayerUserNS, Active: true, Detail: fmt.Sprintf("uid %d, mapped to host uid %s", os.Getuid(), f[1])}
	}
	return Layer{Name: LayerUserNS, Active: true, Detail: "no uid mapped"}
}

// netNSLayer: the host starts the worker in a network namespace of its
// own, where the only interface is a loopback that is down.
func netNSLayer() Layer {
	ifs, err := net.Interfaces()
	if err != nil {
		return Layer{Name: LayerNetwork, Detail: "cannot list interfaces: " + err.Error()}
	}
	var up []string
	for _, i := range ifs {
		if i.Flags&net.FlagUp != 0 {
			up = append(up, i.Name)
		}
	}
	if len(up) > 0 {
		return Layer{Name: LayerNetwork, Detail: fmt.Sprintf("the host's network namespace (interfaces up: %s; the host could not create one: see the host log)", strings.Join(up, ", "))}
	}
	return Layer{Name: LayerNetwork, Active: true, Detail: "own namespace, no interface up"}
}

// Resource limits. The address space is not limited: wazero reserves each
// guest's whole memory (up to 8 GiB) and Go's heap reserves more, so
// RLIMIT_AS would fail large but legal guests; guest memory is capped per
// task instead. RLIMIT_NPROC is not set: it counts every process of the
// (host) uid, not the worker's threads, so it would make the Go runtime
// fail to start threads on a busy host. A fork is stopped by seccomp.
const (
	maxOpenFiles = 4096
	maxFileSize  = 4 << 30
)

func rlimitLayer() Layer {
	var errs []string
	set := func(name string, res int, v uint64) {
		var cur unix.Rlimit
		if err := unix.Getrlimit(res, &cur); err == nil && cur.Max < v {
			v = cur.Max
		}
		if err := unix.Setrlimit(res, &unix.Rlimit{Cur: v, Max: v}); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", name, err))
		}
	}
	set("RLIMIT_CORE", unix.RLIMIT_CORE, 0)
	set("RLIMIT_NOFILE", unix.RLIMIT_NOFILE, maxOpenFiles)
	set("RLIMIT_FSIZE", unix.RLIMIT_FSIZE, maxFileSize)
	if len(errs) > 0 {
		return Layer{Name: LayerRlimits, Detail: strings.Join(errs, "; ")}
	}
	return Layer{Name: LayerRlimits, Active: true, Detail: fmt.Sprintf("core 0, open files %d, file size %d MiB (address space and processes: not limited, see docs/SECURITY.md)", maxOpenFiles, maxFileSize>>20)}
}

// status reads the fields of /proc/self/status (the main thread's).
func status() map[string]string {
	out := map[string]string{}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// capsLayer: a worker started in a user namespace as a non-root uid has no
// capabilities after exec. Where it still has some (a root host that could
// not create a user namespace), it drops them all, on every thread (psx):
// the bounding set first, then the effective, permitted and inheritable
// sets.
func capsLayer() Layer {
	if st := status(); st["CapEff"] == "0000000000000000" && st["CapPrm"] == "0000000000000000" {
		return Layer{Name: LayerCapabilities, Active: true, Detail: "none (effective, permitted and inheritable sets empty)"}
	}
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		_, _, _ = psx.Syscall3(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0)
	}
	_, _, _ = psx.Syscall6(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, 0)
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if _, _, e := psx.Syscall3(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return Layer{Name: LayerCapabilities, Detail: "capset: " + e.Error()}
	}
	if st := status(); st["CapEff"] != "0000000000000000" {
		return Layer{Name: LayerCapabilities, Detail: "still has capabilities " + st["CapEff"]}
	}
	return Layer{Name: LayerCapabilities, Active: true, Detail: "dropped by the worker (bounding, effective, permitted, inheritable, ambient)"}
}

// landlockLayer limits the worker's file access to the directories it
// needs: the modules directory read-only; the compilation cache and the
// host's allowed directories read-write. Mounts are granted per task, but
// within the allowed directories, so the worker is restricted once, to
// those roots; the per-task grant check is the host's. On Landlock ABI ≥ 4
// the worker may not bind or connect TCP sockets, on ≥ 6 it may not signal
// processes outside its domain (the host) or use abstract Unix sockets.
func landlockLayer(opts Options) Layer {
	abi, err := llsys.LandlockGetABIVersion()
	if err != nil || abi < 1 {
		return Layer{Name: LayerLandlock, Detail: fmt.Sprintf("the kernel has no Landlock (%v)", err)}
	}
	rules := []landlock.Rule{
		landlock.RODirs("/sys/fs/cgroup").IgnoreIfMissing(), // the Go runtime reads its CPU limit
	}
	if len(opts.ReadDirs) > 0 {
		rules = append(rules, landlock.RODirs(opts.ReadDirs...).IgnoreIfMissing())
	}
	if len(opts.WriteDirs) > 0 {
		rules = append(rules, landlock.RWDirs(opts.WriteDirs...).WithRefer().IgnoreIfMissing())
	}
	if err := landlock.V11.BestEffort().Restrict(rules...); err != nil {
		return Layer{Name: LayerLandlock, Detail: "restrict: " + err.Error()}
	}
	return Layer{Name: LayerLandlock, Active: true, Detail: fmt.Sprintf("ABI %d: read %v, read-write %v, nothing else", abi, opts.ReadDirs, opts.WriteDirs)}
}

// nnpLayer sets no_new_privs on every thread (Landlock has set it where it
// applied): execve can never again grant privileges.
func nnpLayer() Layer {
	if _, _, e := psx.Syscall6(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0); e != 0 {
		return Layer{Name: LayerNoNewPrivs, Detail: "prctl: " + e.Error()}
	}
	v, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
	if err != nil || v != 1 {
		return Layer{Name: LayerNoNewPrivs, Detail: fmt.Sprintf("not set (%d, %v)", v, err)}
	}
	return Layer{Name: LayerNoNewPrivs, Active: true, Detail: "set"}
}

func seccompLayer() Layer {
	n, err := loadSeccomp(os.Getpid())
	if err != nil {
		return Layer{Name: LayerSeccomp, Detail: err.Error()}
	}
	return Layer{Name: LayerSeccomp, Active: true, Detail: "allow list of " + strconv.Itoa(n) + " system calls; the dangerous ones kill the worker, the others fail with EPERM"}
}
