// Command attacker is a guest that tries to break out of what it was
// granted: out of its directory mounts (symbolic links, `..`, hard links,
// renames, links planted on the host), into writes on read-only mounts,
// into grants its task does not hold, into other tasks' IDs, and into
// cancelling other clients' tasks. Package host's attack tests
// (attack_test.go) run each attack and check it fails with a clear error.
//
// Each filesystem attack returns the error the guest saw; it fails with
// an "ESCAPED" error if the attack worked.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
	"unsafe"

	"github.com/rayhost/rayhost/guest-sdk/ray"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/ids"
)

var _ = ray.Func0("ok", func(ctx context.Context) (string, error) { return "ok", nil })

// Raw imports: WASI calls with paths Go's os package would clean first,
// and the rayhost call with requests the SDK would never make.

//go:wasmimport wasi_snapshot_preview1 path_open
func pathOpen(dirFD int32, dirflags uint32, path unsafe.Pointer, pathLen uint32, oflags uint32, base uint64, inheriting uint64, fdflags uint32, fd unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 path_rename
func pathRename(oldFD int32, oldPath unsafe.Pointer, oldLen uint32, newFD int32, newPath unsafe.Pointer, newLen uint32) uint32

//go:wasmimport wasi_snapshot_preview1 path_symlink
func pathSymlink(oldPath unsafe.Pointer, oldLen uint32, fd int32, newPath unsafe.Pointer, newLen uint32) uint32

//go:wasmimport rayhost call
func rawCall(op uint32, ptr unsafe.Pointer, n uint32) int64

// wasiErr names the WASI errnos the attacks expect.
func wasiErr(e uint32) error {
	switch e {
	case 0:
		return nil
	case 63:
		return errors.New("operation not permitted")
	case 44:
		return errors.New("no such file or directory")
	case 69:
		return errors.New("read-only file system")
	case 76:
		return errors.New("capabilities insufficient")
	}
	return fmt.Errorf("wasi errno %d", e)
}

func ptr(s string) (unsafe.Pointer, uint32) {
	b := []byte(s)
	return unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b))
}

// openAt opens path relative to the directory dir (a mount) without
// Go's path cleaning; it returns the new fd.
func openAt(dir, path string, create bool) (int32, error) {
	d, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	var fd int32
	p, n := ptr(path)
	var oflags uint32
	if create {
		oflags = 1 // O_CREAT
	}
	if e := pathOpen(int32(d.Fd()), 1, p, n, oflags, 0x1FFFFFFF, 0x1FFFFFFF, 0, unsafe.Pointer(&fd)); e != 0 {
		return 0, fmt.Errorf("path_open %s: %w", path, wasiErr(e))
	}
	return fd, nil
}

func escaped(format string, a ...any) error { return fmt.Errorf("ESCAPED: "+format, a...) }

// fsAttack runs one named attack against the read-write mount /m (and the
// read-only mount /r, for ro_writes).
var _ = ray.Func1("fs_attack", func(ctx context.Context, name string) (string, error) {
	switch name {
	case "symlink_relative":
		err := os.Symlink("../../../../../../proc/self", "/m/esc")
		if b, rerr := os.ReadFile("/m/esc/environ"); rerr == nil {
			return "", escaped("read the worker's environment (%d bytes)", len(b))
		}
		if err == nil {
			return "", escaped("made a symbolic link out of the mount")
		}
		return err.Error(), nil
	case "symlink_absolute":
		err := os.Symlink("/etc", "/m/abs")
		if _, rerr := os.ReadFile("/m/abs/passwd"); rerr == nil {
			return "", escaped("read /etc/passwd")
		}
		if err == nil {
			return "", escaped("made a symbolic link out of the mount")
		}
		return err.Error(), nil
	case "symlink_raw":
		// Below the os package: path_symlink straight to the mount.
		d, err := os.Open("/m")
		if err != nil {
			return "", err
		}
		defer d.Close()
		op, on := ptr("../../../../../../etc")
		np, nn := ptr("raw")
		if err := wasiErr(pathSymlink(op, on, int32(d.Fd()), np, nn)); err != nil {
			return "path_symlink: " + err.Error(), nil
		}
		return "", escaped("made a symbolic link out of the mount")
	case "dotdot":
		var errs []string
		for _, p := range []string{"../../../../../../etc/passwd", "sub/../../../../../../etc/passwd", "..", "../"} {
			fd, err := openAt("/m", p, false)
			if err == nil {
				return "", escaped("opened %s (fd %d)", p, fd)
			}
			errs = append(errs, err.Error())
		}
		if b, err := os.ReadFile("/m/../../../../etc/passwd"); err == nil {
			return "", escaped("read /etc/passwd (%d bytes)", len(b))
		}
		return strings.Join(errs, "; "), nil
	case "dotdot_create":
		fd, err := openAt("/m", "../escaped-by-dotdot", true)
		if err == nil {
			return "", escaped("created a file beside the mount (fd %d)", fd)
		}
		return err.Error(), nil
	case "hardlink":
		err := os.Link("/m/data.txt", "/m/hard")
		if err == nil {
			return "", escaped("made a hard link")
		}
		return err.Error(), nil
	case "rename_out":
		d, err := os.Open("/m")
		if err != nil {
			return "", err
		}
		defer d.Close()
		fd := int32(d.Fd())
		op, on := ptr("data.txt")
		np, nn := ptr("../../renamed-out.txt")
		if err := wasiErr(pathRename(fd, op, on, fd, np, nn)); err != nil {
			return "path_rename: " + err.Error(), nil
		}
		return "", escaped("renamed a file out of the mount")
	case "planted_abs", "planted_rel":
		b, err := os.ReadFile("/m/" + name + "/passwd")
		if err == nil {
			return "", escaped("read /etc/passwd through a planted link (%d bytes)", len(b))
		}
		return err.Error(), nil
	case "planted_write":
		err := os.WriteFile("/m/planted_out/pwned", []byte("pwned"), 0o644)
		if err == nil {
			return "", escaped("wrote through a planted link")
		}
		return err.Error(), nil
	case "normal":
		// What a mount is for still works.
		if err := os.WriteFile("/m/out.txt", []byte("written"), 0o644); err != nil {
			return "", err
		}
		if err := os.Mkdir("/m/newdir", 0o755); err != nil {
			return "", err
		}
		if err := os.Rename("/m/out.txt", "/m/newdir/out.txt"); err != nil {
			return "", err
		}
		b, err := os.ReadFile("/m/newdir/out.txt")
		if err != nil {
			return "", err
		}
		ents, err := os.ReadDir("/m")
		if err != nil {
			return "", err
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return string(b) + " " + strings.Join(names, ","), nil
	case "ro_writes":
		return roWrites()
	}
	return "", fmt.Errorf("unknown attack %q", name)
})

// roWrites tries every write-like operation on the read-only mount /r,
// which holds data.txt and an empty directory sub. (WASI preview 1 has no
// chmod: Go's os.Chmod only stats the file; sandboxfs refuses Chmod too.)
func roWrites() (string, error) {
	now := time.Now()
	ops := []struct {
		name string
		do   func() error
	}{
		{"create", func() error { return os.WriteFile("/r/new.txt", []byte("x"), 0o644) }},
		{"open for writing", func() error {
			f, err := os.OpenFile("/r/data.txt", os.O_RDWR, 0)
			if err == nil {
				_, err = f.WriteString("overwritten")
				f.Close()
				if err == nil {
					return nil
				}
			}
			return err
		}},
		{"append", func() error {
			f, err := os.OpenFile("/r/data.txt", os.O_WRONLY|os.O_APPEND, 0)
			if err == nil {
				f.Close()
			}
			return err
		}},
		{"truncate by path", func() error { return os.Truncate("/r/data.txt", 0) }},
		{"truncate open file", func() error {
			f, err := os.Open("/r/data.txt")
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Truncate(0)
		}},
		{"write to a read-only fd", func() error {
			f, err := os.Open("/r/data.txt")
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte("x"))
			return err
		}},
		{"mkdir", func() error { return os.Mkdir("/r/d", 0o755) }},
		{"rmdir", func() error { return os.Remove("/r/sub") }},
		{"unlink", func() error { return os.Remove("/r/data.txt") }},
		{"rename", func() error { return os.Rename("/r/data.txt", "/r/moved.txt") }},
		{"symlink", func() error { return os.Symlink("data.txt", "/r/s") }},
		{"link", func() error { return os.Link("/r/data.txt", "/r/l") }},
		{"utimes", func() error { return os.Chtimes("/r/data.txt", now, now) }},
	}
	var out []string
	for _, op := range ops {
		err := op.do()
		if err == nil {
			return "", escaped("%s on a read-only mount succeeded", op.name)
		}
		out = append(out, op.name+": "+err.Error())
	}
	return strings.Join(out, "\n"), nil
}

// Grants: a task submits a child with grants of its choosing.

var readFile = ray.Func1("read_file", func(ctx context.Context, path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
})

var writeFile = ray.Func1("write_file", func(ctx context.Context, path string) (string, error) {
	return "wrote", os.WriteFile(path, []byte("written by a child"), 0o644)
})

var getenv = ray.Func1("getenv", func(ctx context.Context, name string) (string, error) {
	return os.Getenv(name), nil
})

// spawn submits read_file (or write_file) of path with a mount of dir at
// /c, read-only or not, and returns what the child returns.
var _ = ray.Func3("spawn_mount", func(ctx context.Context, dir string, readOnly bool, path string) (string, error) {
	f := readFile
	if !readOnly {
		f = writeFile
	}
	return ray.Get(ctx, f.Options(ray.MountDir(dir, "/c", readOnly)).Remote(path))
})

// spawnEnv submits getenv(name) with the environment variable name=value.
var _ = ray.Func2("spawn_env", func(ctx context.Context, name, value string) (string, error) {
	return ray.Get(ctx, getenv.Options(ray.Env(map[string]string{name: value})).Remote(name))
})

// Reader is an actor whose creation asks for a mount.
type Reader struct{}

var readerClass = ray.Actor0("Reader", func(ctx context.Context) (*Reader, error) { return &Reader{}, nil })

var readerRead = ray.Method1(readerClass, "read", func(r *Reader, ctx context.Context, path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
})

// readerSpawn submits read_file with its actor's own mount: a method holds
// its actor's grants.
var readerSpawn = ray.Method1(readerClass, "spawn", func(r *Reader, ctx context.Context, dir string) (string, error) {
	return ray.Get(ctx, readFile.Options(ray.MountDir(dir, "/c", true)).Remote("/c/sub/data.txt"))
})

// spawnActor creates a Reader with a mount of dir at /c and reads path.
var _ = ray.Func3("spawn_actor", func(ctx context.Context, dir string, readOnly bool, path string) (string, error) {
	a := readerClass.Options(ray.MountDir(dir, "/c", readOnly)).Remote()
	return ray.Get(ctx, readerRead.Remote(a, path))
})

// actorSpawns creates a Reader with a read-only mount of dir, whose method
// submits a child with the same mount.
var _ = ray.Func1("actor_spawns", func(ctx context.Context, dir string) (string, error) {
	a := readerClass.Options(ray.MountDir(dir, "/c", true)).Remote()
	return ray.Get(ctx, readerSpawn.Remote(a, dir))
})

// Function defaults are not grants over the API: a caller gets what it asks.
var _ = ray.Func0("default_grant", func(ctx context.Context) (string, error) {
	ents, err := os.ReadDir("/tmp")
	if err != nil {
		return err.Error(), nil
	}
	return "", escaped("a registered default mount was granted without being asked for (%d entries)", len(ents))
}, ray.MountDir(os.TempDir(), "/tmp", false))

// IDs: the victim and the forger.

var four = ray.Func0("four", func(ctx context.Context) (int, error) { return 4, nil })

var _ = ray.Func0("million", func(ctx context.Context) (int, error) { return 1_000_000, nil })

// victim waits until the file /gate/go exists (the test creates it once the
// attack is over), then submits n children returning 4 each: 4n.
var _ = ray.Func1("victim", func(ctx context.Context, n int) (int, error) {
	for {
		if _, err := os.Stat("/gate/go"); err == nil {
			break
		}
		if err := ray.Sleep(ctx, 10*time.Millisecond); err != nil {
			return 0, err
		}
	}
	refs := make([]ray.ObjectRef[int], n)
	for i := range refs {
		refs[i] = four.Remote()
	}
	vals, err := ray.GetAll(ctx, refs)
	sum := 0
	for _, v := range vals {
		sum += v
	}
	return sum, err
})

// forge pre-claims the victim's first n child IDs with tasks that return a
// million, and puts a value under the victim's first return.
var _ = ray.Func2("forge", func(ctx context.Context, victim string, n int) (string, error) {
	v, err := ids.ParseTaskID(victim)
	if err != nil {
		return "", err
	}
	for i := range uint64(n) {
		req := abi.SubmitRequest{Task: v.Child(i), Function: "million", NumReturns: 1, Resources: abi.Resources{CPUs: -1}}
		b := req.Encode(nil)
		if c := rawCall(uint32(abi.OpSubmit), unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b))); c < 0 {
			return "", fmt.Errorf("submit refused at once: %d", c)
		}
	}
	put := abi.PutRequest{ID: v.Return(0), Value: abi.Value{Codec: abi.CodecJSON, Data: []byte("999")}}
	b := put.Encode(nil)
	rawCall(uint32(abi.OpPut), unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b)))
	// Let the host see the submissions before this task ends.
	_ = ray.Sleep(ctx, time.Millisecond)
	return "forged", nil
})

// badOptions submits a child under a valid ID of its own, with options the
// SDK refuses before they leave the guest: a retry count below -1
// ("retries") or 1e-7 GPUs, finer than the host's unit ("gpus"). It
// returns the child's result ID, for the test to Get.
// badOptionsAnswer is what bad_options returns: why the worker refused
// the submit, or the child's ref. A ref, not its ID as a string: the
// result then holds the child's object, which would otherwise be freed
// with this task's attempt.
type badOptionsAnswer struct {
	Refused string              `json:"refused,omitempty"`
	Child   *ray.ObjectRef[int] `json:"child,omitempty"`
}

var _ = ray.Func1("bad_options", func(ctx context.Context, which string) (badOptionsAnswer, error) {
	me, err := ids.ParseTaskID(ray.TaskID(ctx))
	if err != nil {
		return badOptionsAnswer{}, err
	}
	child := me.ChildOf(uint32(ray.Attempt(ctx)), 0)
	req := abi.SubmitRequest{Task: child, Function: "million", NumReturns: 1, Resources: abi.Resources{CPUs: -1}, MaxRetries: 3}
	switch which {
	case "retries":
		req.MaxRetries = -5
	case "gpus":
		req.Resources.GPUs = 1e-7
	}
	b := req.Encode(nil)
	if c := rawCall(uint32(abi.OpSubmit), unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b))); c < 0 {
		return badOptionsAnswer{Refused: fmt.Sprintf("refused:%d", c)}, nil // the worker's checks caught it
	}
	var ref ray.ObjectRef[int]
	if err := json.Unmarshal([]byte(`{"object_id":"`+child.Return(0).String()+`"}`), &ref); err != nil {
		return badOptionsAnswer{}, err
	}
	return badOptionsAnswer{Child: &ref}, nil
})

// cancelOther force-cancels the task victim (not its own) by its first
// return's ID.
var _ = ray.Func1("cancel_other", func(ctx context.Context, victim string) (string, error) {
	v, err := ids.ParseTaskID(victim)
	if err != nil {
		return "", err
	}
	req := abi.CancelRequest{Ref: abi.Ref{ID: v.Return(0)}, Force: true, Recursive: true}
	b := req.Encode(nil)
	rawCall(uint32(abi.OpCancel), unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b)))
	_ = ray.Sleep(ctx, time.Millisecond)
	return "sent", nil
})

func main() {}

// The driver reads $GRANTED_DIR/hello.txt through a child task it grants
// that directory to: it works only if the driver itself holds the grant
// (rayhost run --mount, --env).
func init() {
	ray.Main(func(ctx context.Context) error {
		dir := os.Getenv("GRANTED_DIR")
		s, err := ray.Get(ctx, readFile.Options(ray.MountDir(dir, "/c", true)).Remote("/c/hello.txt"))
		if err != nil {
			return err
		}
		fmt.Println("child read:", s)
		return nil
	})
}

// release_other tries to free objects it does not hold: it releases the
// victim object (by its hex ID) with the largest count, sends a malformed
// release and one far over the argument limit, and drops a value whose
// nested refs claim owners that do not exist. It returns the codes the
// worker gave each raw call.
var _ = ray.Func1("release_other", func(ctx context.Context, victim string) ([]int64, error) {
	id, err := ids.ParseObjectID(victim)
	if err != nil {
		return nil, err
	}
	var codes []int64
	send := func(b []byte) {
		codes = append(codes, rawCall(uint32(abi.OpRelease), unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b))))
	}
	send((&abi.ReleaseRequest{IDs: []ids.ObjectID{id, id}, Counts: []uint32{1 << 31, 1 << 31}}).Encode(nil))
	send([]byte{0xff, 0x01})
	big := abi.ReleaseRequest{}
	for i := range 200_000 {
		big.IDs = append(big.IDs, ids.TaskID{byte(i), byte(i >> 8), byte(i >> 16)}.Return(0))
		big.Counts = append(big.Counts, 1)
	}
	send(big.Encode(nil))
	// The queued releases reach the host before this task's Done (ABI §5:
	// pipelined frames go out, in order, with the next frame sent).
	return codes, nil
})

// bad_cbor puts a "cbor" value the SDK would never write (which: "deep"
// nesting, a "huge" declared length, a "forged" ref tag whose ID is 3
// bytes, a "nan") under its first put, and returns a ref to it as JSON
// (which the host counts, so the put lives on).
var _ = ray.Func1("bad_cbor", func(ctx context.Context, which string) (map[string]any, error) {
	task, err := ids.ParseTaskID(ray.TaskID(ctx))
	if err != nil {
		return nil, err
	}
	var data []byte
	switch which {
	case "deep":
		data = append([]byte(strings.Repeat("\x81", 1_000_000)), 0)
	case "huge":
		data = []byte{0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}
	case "forged":
		data = []byte{0xda, 'R', 'A', 'Y', 0x01, 0x82, 0x43, 1, 2, 3, 0x60}
	case "nan":
		data = []byte{0xf9, 0x7e, 0x00}
	}
	put := abi.PutRequest{ID: task.Put(0), Value: abi.Value{Codec: abi.CodecCBOR, Data: data}}
	b := put.Encode(nil)
	if c := rawCall(uint32(abi.OpPut), unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b))); c < 0 {
		return nil, fmt.Errorf("put refused: %d", c)
	}
	return map[string]any{"object_id": task.Put(0).String()}, nil
})
