package confine

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"

	"github.com/rayhost/rayhost/internal/sandboxfs"
)

// The review's file-ops child: confined like a worker, it does through a
// read-write sandboxfs mount every file operation a guest's WASI calls can
// reach, and prints each failure. It runs from init, before TestMain.
func init() {
	dir := os.Getenv("REVIEW_FSOPS_DIR")
	if dir == "" {
		return
	}
	for _, l := range Apply(Options{WriteDirs: []string{dir}}) {
		if l.Name == LayerSeccomp && !l.Active {
			fmt.Println("seccomp inactive: " + l.Detail)
			os.Exit(0)
		}
	}
	fmt.Println(reviewFSOps(dir))
	os.Exit(0)
}

func reviewFSOps(dir string) string {
	m, err := sandboxfs.New(dir, false)
	if err != nil {
		return "mount: " + err.Error()
	}
	defer m.Close()
	var bad []string
	check := func(op string, e experimentalsys.Errno) {
		if e != 0 {
			bad = append(bad, op+": "+e.Error())
		}
	}
	f, e := m.OpenFile("/a.txt", experimentalsys.O_CREAT|experimentalsys.O_EXCL|experimentalsys.O_RDWR, 0o644)
	check("create", e)
	if e == 0 {
		_, e = f.Write([]byte("hello"))
		check("write", e)
		_, e = f.Pwrite([]byte("J"), 0)
		check("pwrite", e)
		_, e = f.Pread(make([]byte, 5), 0)
		check("pread", e)
		check("truncate", f.Truncate(2))
		check("fsync", f.Sync())
		check("fdatasync", f.Datasync())
		_, e = f.Stat()
		check("fstat", e)
		check("futimens", f.Utimens(1e9, 2e9))
		check("close", f.Close())
	}
	check("mkdir", m.Mkdir("/d", 0o755))
	check("rename", m.Rename("/a.txt", "/d/b.txt"))
	_, e = m.Stat("/d/b.txt")
	check("stat", e)
	_, e = m.Lstat("/d/b.txt")
	check("lstat", e)
	check("utimens", m.Utimens("/d/b.txt", 1e9, 2e9))
	// Not Chmod: WASI preview 1 has none (wazero never calls FS.Chmod),
	// and confined it fails with EPERM (os.Root uses fchmodat2, which
	// the allow list lacks).
	d, e := m.OpenFile("/d", experimentalsys.O_RDONLY|experimentalsys.O_DIRECTORY, 0)
	check("open dir", e)
	if e == 0 {
		ents, e := d.Readdir(-1)
		check("readdir", e)
		if e == 0 && len(ents) != 1 {
			bad = append(bad, fmt.Sprintf("readdir: %d entries", len(ents)))
		}
		_, e = d.Seek(0, 0)
		check("rewind dir", e)
		check("close dir", d.Close())
	}
	check("unlink", m.Unlink("/d/b.txt"))
	check("rmdir", m.Rmdir("/d"))
	if len(bad) == 0 {
		return "ok"
	}
	return strings.Join(bad, "; ")
}

// TestReviewConfinedMountOps: the seccomp allow list and Landlock leave
// every file operation of a read-write mount working in a confined worker.
func TestReviewConfinedMountOps(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = []string{"REVIEW_FSOPS_DIR=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("file operations in a confined process: %v\n%s", err, out)
	}
}
