package launch

import (
	"os"
	"os/exec"
	"syscall"
)

// socketPair returns the two ends of a Unix stream socket pair, both
// close-on-exec (exec.Cmd dups the child's end to fd 3 without the flag).
func socketPair() (hostEnd, childEnd *os.File, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "worker-socket"), os.NewFile(uintptr(fds[1]), "host-socket"), nil
}

// dieWithHost makes the kernel kill the worker when the host dies
// (PR_SET_PDEATHSIG); no lifeline is needed.
func dieWithHost(cmd *exec.Cmd) (lifeline *os.File, err error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	return nil, nil
}

// nobody is the uid (and gid) a root host's workers have inside their user
// namespace: not 0, so that exec leaves them no capabilities.
const nobody = 65534

// confineAttempts: a confined worker starts in a user namespace of its own
// (as a non-root uid mapped to the host's uid, so it has no capabilities at
// all after exec, and none it gains inside count outside) and in a network
// namespace of its own, which has no interface but a loopback that is down.
// Where user namespaces are not allowed (a sysctl, a container), a root
// host still gives it a network namespace (the worker then drops its
// capabilities itself); failing that, it starts as an ordinary child. The
// worker reports which layers it got (rayhost health).
func confineAttempts(opts WorkerOptions) []attempt {
	plain := attempt{name: "no namespaces", apply: func(*exec.Cmd) {}}
	if !opts.Confine {
		return []attempt{plain}
	}
	uid, gid := os.Getuid(), os.Getgid()
	inUID, inGID := uid, gid
	if uid == 0 {
		inUID, inGID = nobody, nobody
	}
	out := []attempt{{name: "user and network namespaces", apply: func(cmd *exec.Cmd) {
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:                 syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
			UidMappings:                []syscall.SysProcIDMap{{ContainerID: inUID, HostID: uid, Size: 1}},
			GidMappings:                []syscall.SysProcIDMap{{ContainerID: inGID, HostID: gid, Size: 1}},
			GidMappingsEnableSetgroups: false,
			Credential:                 &syscall.Credential{Uid: uint32(inUID), Gid: uint32(inGID), NoSetGroups: true},
		}
	}}}
	if uid == 0 {
		out = append(out, attempt{name: "network namespace", apply: func(cmd *exec.Cmd) {
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
		}})
	}
	return append(out, plain)
}
