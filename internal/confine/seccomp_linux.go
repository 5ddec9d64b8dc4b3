package confine

import (
	"fmt"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/sys/unix"
)

// allowed are the system calls a worker makes once it is confined: the Go
// runtime (threads, memory, signals, timers, the poller), wazero (mmap'd
// executable code, the compilation cache), the socket to the host, and the
// file calls a guest's granted mounts need. The list was taken from
// `strace -f` of workers running the host's test suite (hostile guests,
// grants, actors, cancels), widened by the file and time calls a guest's
// WASI calls can reach. Names a GOARCH lacks (open on arm64) are skipped.
var allowed = []string{
	// Go runtime: memory, threads, scheduling, signals, time.
	"brk", "mmap", "munmap", "mprotect", "madvise", "mremap", "mincore",
	"futex", "set_robust_list", "get_robust_list", "rseq", "set_tid_address",
	"sched_yield", "sched_getaffinity", "getpid", "gettid", "getppid",
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "restart_syscall",
	"nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday", "time",
	"setitimer", "getitimer", "timer_create", "timer_settime", "timer_gettime", "timer_delete",
	"exit", "exit_group", "getrandom", "uname", "getrusage", "sysinfo",
	"getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
	"arch_prctl",
	// The poller and the socket to the host.
	"epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait", "eventfd2",
	"read", "write", "readv", "writev", "recvfrom", "sendto", "recvmsg", "sendmsg", "shutdown",
	"getsockopt", "getsockname", "getpeername", "poll", "ppoll", "pselect6", "select",
	// Files: the compilation cache, modules, granted mounts (where paths
	// go is Landlock's and the mount code's business).
	"openat", "openat2", "open", "close", "close_range", "fcntl", "dup", "dup3",
	"pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2", "lseek",
	"fstat", "newfstatat", "stat", "lstat", "statx", "fstatfs", "statfs",
	"getdents64", "readlinkat", "readlink", "faccessat", "faccessat2", "access",
	"mkdirat", "mkdir", "unlinkat", "unlink", "rmdir", "renameat", "renameat2", "rename",
	"linkat", "symlinkat", "ftruncate", "truncate", "fallocate", "fadvise64",
	"fsync", "fdatasync", "utimensat", "fchmod", "fchmodat", "flock", "copy_file_range",
	"fchown", "fchownat", "lchown", "getcwd",
}

// killed are calls no worker makes and that are the usual ways out of a
// process or into the kernel: one of them means the worker is compromised
// (a wazero bug exploited), so the kernel kills it at once and the host
// sees a dead worker (worker_died) instead of an EPERM the attacker can
// probe around.
var killed = []string{
	"execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
	"mount", "umount2", "pivot_root", "chroot", "fsopen", "fsmount", "fsconfig", "fspick", "move_mount", "open_tree",
	"setns", "unshare", "bpf", "perf_event_open", "userfaultfd",
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
	"swapon", "swapoff", "acct", "quotactl", "syslog", "settimeofday", "clock_settime", "adjtimex", "clock_adjtime",
	"sethostname", "setdomainname", "keyctl", "add_key", "request_key",
	"open_by_handle_at", "name_to_handle_at", "iopl", "ioperm", "personality",
	"io_uring_setup", "io_uring_enter", "io_uring_register", "mknod", "mknodat", "vhangup", "lookup_dcookie",
}

// loadSeccomp installs the filter on every thread (TSYNC) and returns the
// number of allowed calls. Everything not listed fails with EPERM: the Go
// runtime and wazero probe a few calls and cope with a refusal (prctl,
// sched_setaffinity…), and a new call a future Go runtime makes fails
// cleanly instead of killing every worker.
//
// Signals and prlimit may only target the worker itself. clone must make a
// thread (CLONE_THREAD), not a process; clone3, whose flags a filter cannot
// read, fails with ENOSYS, so the C library falls back to clone.
func loadSeccomp(pid int) (int, error) {
	if !seccomp.Supported() {
		return 0, fmt.Errorf("the kernel has no seccomp filters")
	}
	info, err := arch.GetInfo("")
	if err != nil {
		return 0, fmt.Errorf("seccomp: %w", err)
	}
	known := func(names []string) []string {
		var out []string
		for _, n := range names {
			if _, ok := info.SyscallNames[n]; ok {
				out = append(out, n)
			}
		}
		return out
	}
	self := func(name string, arg uint32) seccomp.NameWithConditions {
		return seccomp.NameWithConditions{Name: name, Conditions: seccomp.ArgumentConditions{{Argument: arg, Operation: seccomp.Equal, Value: uint64(pid)}}}
	}
	allow := known(allowed)
	conditional := []seccomp.NameWithConditions{
		self("tgkill", 0), self("kill", 0), self("prlimit64", 0),
		{Name: "prlimit64", Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.Equal, Value: 0}}},
		{Name: "clone", Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.BitsSet, Value: unix.CLONE_THREAD}}},
	}
	filter := seccomp.Filter{
		NoNewPrivs: true,
		Flag:       seccomp.FilterFlagTSync,
		Policy: seccomp.Policy{
			DefaultAction: seccomp.ActionErrno,
			Syscalls: []seccomp.SyscallGroup{
				{Action: seccomp.ActionKillProcess, Names: known(killed)},
				{Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS), Names: known([]string{"clone3"})},
				{Action: seccomp.ActionAllow, Names: allow, NamesWithCondtions: conditional},
			},
		},
	}
	if err := seccomp.LoadFilter(filter); err != nil {
		return 0, fmt.Errorf("seccomp: %w", err)
	}
	return len(allow) + len(conditional), nil
}
