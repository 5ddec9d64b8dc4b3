package sandboxfs

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
)

// setup makes dir/mount with a file and a subdirectory, a directory beside
// it with a secret, and links planted in the mount that lead out.
func setup(t *testing.T) (mount, outside string) {
	t.Helper()
	dir := t.TempDir()
	mount, outside = filepath.Join(dir, "mount"), filepath.Join(dir, "outside")
	for _, d := range []string{filepath.Join(mount, "sub"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, data := range map[string]string{filepath.Join(mount, "data.txt"): "data", filepath.Join(outside, "secret"): "secret"} {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range map[string]string{"abs": outside, "rel": "../outside", "inside": "sub"} {
		if err := os.Symlink(target, filepath.Join(mount, name)); err != nil {
			t.Fatal(err)
		}
	}
	return mount, outside
}

func open(t *testing.T, dir string, ro bool) *FS {
	t.Helper()
	f, err := New(dir, ro)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func TestNoWayOut(t *testing.T) {
	mount, outside := setup(t)
	f := open(t, mount, false)
	for _, p := range []string{"../outside/secret", "sub/../../outside/secret", "abs/secret", "rel/secret", "/../outside/secret"} {
		if _, e := f.OpenFile(p, experimentalsys.O_RDONLY, 0); e != experimentalsys.EPERM {
			t.Errorf("open %s: errno %v, want EPERM", p, e)
		}
		if _, e := f.Stat(p); e != experimentalsys.EPERM {
			t.Errorf("stat %s: errno %v, want EPERM", p, e)
		}
		if _, e := f.OpenFile(p, experimentalsys.O_WRONLY|experimentalsys.O_CREAT, 0o644); e != experimentalsys.EPERM {
			t.Errorf("create %s: errno %v, want EPERM", p, e)
		}
	}
	if e := f.Rename("data.txt", "../outside/moved"); e != experimentalsys.EPERM {
		t.Errorf("rename out: errno %v", e)
	}
	if e := f.Rename("data.txt", "abs/moved"); e != experimentalsys.EPERM {
		t.Errorf("rename through a link out: errno %v", e)
	}
	if e := f.Mkdir("abs/newdir", 0o755); e != experimentalsys.EPERM {
		t.Errorf("mkdir through a link out: errno %v", e)
	}
	if e := f.Unlink("abs/secret"); e != experimentalsys.EPERM {
		t.Errorf("unlink through a link out: errno %v", e)
	}
	if e := f.Chmod("abs/secret", 0o777); e != experimentalsys.EPERM {
		t.Errorf("chmod through a link out: errno %v", e)
	}
	if e := f.Utimens("abs/secret", 0, 0); e != experimentalsys.EPERM {
		t.Errorf("utimes through a link out: errno %v", e)
	}
	if e := f.Symlink("../outside", "made"); e != experimentalsys.EPERM {
		t.Errorf("symlink: errno %v, want EPERM", e)
	}
	if e := f.Link("data.txt", "hard"); e != experimentalsys.EPERM {
		t.Errorf("link: errno %v, want EPERM", e)
	}
	// A link planted on the host while the mount is open is refused too.
	if err := os.Symlink(outside, filepath.Join(mount, "late")); err != nil {
		t.Fatal(err)
	}
	if _, e := f.OpenFile("late/secret", experimentalsys.O_RDONLY, 0); e != experimentalsys.EPERM {
		t.Errorf("open through a link made later: errno %v", e)
	}
	ents, err := os.ReadDir(outside)
	if err != nil || len(ents) != 1 {
		t.Fatalf("outside holds %v, %v", ents, err)
	}
	if fi, _ := os.Stat(filepath.Join(outside, "secret")); fi.Mode().Perm() != 0o644 {
		t.Fatalf("the secret's mode changed to %v", fi.Mode())
	}
}

func TestInside(t *testing.T) {
	mount, _ := setup(t)
	f := open(t, mount, false)
	// Links that stay inside are followed; the mount's own root works.
	if _, e := f.Stat("inside"); e != 0 {
		t.Fatalf("stat inside: %v", e)
	}
	for _, p := range []string{"", ".", "/"} {
		if st, e := f.Stat(p); e != 0 || !st.Mode.IsDir() {
			t.Fatalf("stat %q: %v", p, e)
		}
	}
	w, e := f.OpenFile("sub/new.txt", experimentalsys.O_WRONLY|experimentalsys.O_CREAT|experimentalsys.O_TRUNC, 0o644)
	if e != 0 {
		t.Fatal(e)
	}
	if n, e := w.Write([]byte("hello")); e != 0 || n != 5 {
		t.Fatal(n, e)
	}
	if e := w.Truncate(4); e != 0 {
		t.Fatal(e)
	}
	_ = w.Close()
	if e := f.Rename("sub/new.txt", "moved.txt"); e != 0 {
		t.Fatal(e)
	}
	r, e := f.OpenFile("inside/../moved.txt", experimentalsys.O_RDONLY, 0)
	if e != 0 {
		t.Fatal(e)
	}
	buf := make([]byte, 16)
	n, e := r.Pread(buf, 1)
	if e != 0 || string(buf[:n]) != "ell" {
		t.Fatalf("pread = %q, %v", buf[:n], e)
	}
	_ = r.Close()
	d, e := f.OpenFile(".", experimentalsys.O_RDONLY|experimentalsys.O_DIRECTORY, 0)
	if e != 0 {
		t.Fatal(e)
	}
	list := func() []string {
		ents, e := d.Readdir(-1)
		if e != 0 {
			t.Fatal(e)
		}
		var names []string
		for _, x := range ents {
			if x.Ino == 0 {
				t.Errorf("%s has inode 0", x.Name)
			}
			names = append(names, x.Name)
		}
		slices.Sort(names)
		return names
	}
	want := []string{"abs", "data.txt", "inside", "moved.txt", "rel", "sub"}
	if got := list(); !slices.Equal(got, want) {
		t.Fatalf("readdir = %v, want %v", got, want)
	}
	if _, e := d.Seek(0, io.SeekStart); e != 0 {
		t.Fatal(e)
	}
	if got := list(); !slices.Equal(got, want) {
		t.Fatalf("readdir after rewind = %v", got)
	}
	_ = d.Close()
	if e := f.Unlink("sub"); e != experimentalsys.EISDIR {
		t.Errorf("unlink a directory: %v", e)
	}
	if e := f.Rmdir("moved.txt"); e != experimentalsys.ENOTDIR {
		t.Errorf("rmdir a file: %v", e)
	}
	if e := f.Unlink("moved.txt"); e != 0 {
		t.Error(e)
	}
	if s, e := f.Readlink("rel"); e != 0 || s != "../outside" {
		t.Errorf("readlink = %q, %v", s, e)
	}
}

func TestReadOnly(t *testing.T) {
	mount, _ := setup(t)
	f := open(t, mount, true)
	for _, fl := range []experimentalsys.Oflag{experimentalsys.O_WRONLY, experimentalsys.O_RDWR, experimentalsys.O_APPEND,
		experimentalsys.O_CREAT, experimentalsys.O_TRUNC, experimentalsys.O_RDONLY | experimentalsys.O_EXCL} {
		if _, e := f.OpenFile("data.txt", fl, 0o644); e != experimentalsys.EROFS {
			t.Errorf("open with %v: errno %v, want EROFS", fl, e)
		}
	}
	for name, e := range map[string]experimentalsys.Errno{
		"mkdir":   f.Mkdir("d", 0o755),
		"chmod":   f.Chmod("data.txt", 0o777),
		"rename":  f.Rename("data.txt", "x"),
		"rmdir":   f.Rmdir("sub"),
		"unlink":  f.Unlink("data.txt"),
		"link":    f.Link("data.txt", "l"),
		"symlink": f.Symlink("data.txt", "s"),
		"utimens": f.Utimens("data.txt", 0, 0),
	} {
		if e != experimentalsys.EROFS {
			t.Errorf("%s: errno %v, want EROFS", name, e)
		}
	}
	r, e := f.OpenFile("data.txt", experimentalsys.O_RDONLY, 0)
	if e != 0 {
		t.Fatal(e)
	}
	defer r.Close()
	if _, e := r.Write([]byte("x")); e == 0 {
		t.Error("write to a read-only file")
	}
	if _, e := r.Pwrite([]byte("x"), 0); e == 0 {
		t.Error("pwrite to a read-only file")
	}
	if e := r.Truncate(0); e != experimentalsys.EROFS {
		t.Errorf("truncate: %v", e)
	}
	if e := r.Utimens(0, 0); e != experimentalsys.EROFS {
		t.Errorf("futimens: %v", e)
	}
	b, err := os.ReadFile(filepath.Join(mount, "data.txt"))
	if err != nil || string(b) != "data" {
		t.Fatalf("data.txt = %q, %v", b, err)
	}
	fi, _ := os.Stat(filepath.Join(mount, "data.txt"))
	if fi.Mode().Perm() != fs.FileMode(0o644) {
		t.Fatalf("mode = %v", fi.Mode())
	}
}

func TestNewRefusesAFile(t *testing.T) {
	mount, _ := setup(t)
	if _, err := New(filepath.Join(mount, "data.txt"), false); err == nil {
		t.Fatal("a file mounted as a directory")
	}
}
