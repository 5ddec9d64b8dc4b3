// Package sandboxfs is the filesystem a guest sees through a directory
// mount: a wazero experimental/sys FS over an os.Root, so that every path is
// resolved inside the mounted directory with no way out.
//
// What it guarantees:
//   - Every path (open, stat, mkdir, rename, unlink, chmod, utimes...) is
//     resolved by os.Root: `..` and symbolic links are followed only while
//     they stay inside the mount; one that leads out (absolute, relative,
//     planted on the host before the task or made during it) fails with
//     EPERM. A directory moved while open stays the same directory.
//   - A guest can create neither symbolic links nor hard links (EPERM, even
//     in a read-write mount): a link is the one way a path could later lead
//     somewhere the mount's owner did not mean, so there are none to follow.
//   - A read-only mount refuses every write-like operation with EROFS:
//     opening for writing, create, truncate, append, mkdir, rmdir, unlink,
//     rename, chmod, utimes, link and symlink, on paths and on open files.
//
// Mount it with wazero.NewFSConfig().(sysfs.FSConfig).WithSysFSMount.
package sandboxfs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"
)

// ErrNotDir: the mount's host path is not a directory.
var ErrNotDir = errors.New("sandboxfs: not a directory")

// FS is one mounted host directory. It is safe for concurrent use.
type FS struct {
	experimentalsys.UnimplementedFS
	root     *os.Root
	readOnly bool
}

// New opens dir as the root of a mount. Close releases it.
func New(dir string, readOnly bool) (*FS, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	fi, err := r.Stat(".")
	if err != nil {
		_ = r.Close()
		return nil, err
	}
	if !fi.IsDir() {
		_ = r.Close()
		return nil, ErrNotDir
	}
	return &FS{root: r, readOnly: readOnly}, nil
}

// Close releases the directory. Files opened through the FS stay usable.
func (f *FS) Close() error { return f.root.Close() }

// String names the mount for wazero's messages.
func (f *FS) String() string { return f.root.Name() }

// ReadOnly reports whether the mount refuses writes.
func (f *FS) ReadOnly() bool { return f.readOnly }

// rel turns a path wazero passes (relative to the mount; "", "." or "/"
// for the mount itself) into a name for os.Root. Escapes are left to
// os.Root to refuse.
func rel(p string) string {
	p = strings.TrimLeft(p, "/")
	if p == "" {
		return "."
	}
	return p
}

// errno maps an error from os to a WASI errno. A path that leads out of the
// mount (through `..` or a symbolic link) is EPERM.
func errno(err error) experimentalsys.Errno {
	if err == nil {
		return 0
	}
	if strings.Contains(err.Error(), "path escapes from parent") {
		return experimentalsys.EPERM
	}
	var pe *os.PathError
	if errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "escapes") {
		return experimentalsys.EPERM
	}
	var le *os.LinkError
	if errors.As(err, &le) && strings.Contains(le.Err.Error(), "escapes") {
		return experimentalsys.EPERM
	}
	if errors.Is(err, io.EOF) {
		return 0
	}
	return experimentalsys.UnwrapOSError(err)
}

const writeFlags = experimentalsys.O_RDWR | experimentalsys.O_WRONLY | experimentalsys.O_APPEND |
	experimentalsys.O_CREAT | experimentalsys.O_TRUNC | experimentalsys.O_EXCL

func osFlags(o experimentalsys.Oflag) int {
	var flag int
	switch o & (experimentalsys.O_RDONLY | experimentalsys.O_RDWR | experimentalsys.O_WRONLY) {
	case experimentalsys.O_RDWR:
		flag = os.O_RDWR
	case experimentalsys.O_WRONLY:
		flag = os.O_WRONLY
	default:
		flag = os.O_RDONLY
	}
	for _, m := range []struct {
		o    experimentalsys.Oflag
		flag int
	}{
		{experimentalsys.O_APPEND, os.O_APPEND},
		{experimentalsys.O_CREAT, os.O_CREATE},
		{experimentalsys.O_EXCL, os.O_EXCL},
		{experimentalsys.O_SYNC, os.O_SYNC},
		{experimentalsys.O_TRUNC, os.O_TRUNC},
		{experimentalsys.O_DIRECTORY, oDirectory},
		{experimentalsys.O_NOFOLLOW, oNofollow},
		{experimentalsys.O_DSYNC, oDsync},
	} {
		if o&m.o != 0 {
			flag |= m.flag
		}
	}
	return flag
}

// OpenFile opens a file or directory inside the mount.
func (f *FS) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	if f.readOnly && flag&writeFlags != 0 {
		return nil, experimentalsys.EROFS
	}
	name := rel(p)
	osf, err := f.root.OpenFile(name, osFlags(flag), perm)
	if err != nil {
		return nil, errno(err)
	}
	return &file[int64]{fs: f, name: name, f: osf, flag: flag}, 0
}

// Lstat describes p itself (a link is not followed).
func (f *FS) Lstat(p string) (sys.Stat_t, experimentalsys.Errno) {
	fi, err := f.root.Lstat(rel(p))
	if err != nil {
		return sys.Stat_t{}, errno(err)
	}
	return sys.NewStat_t(fi), 0
}

// Stat describes what p leads to, inside the mount.
func (f *FS) Stat(p string) (sys.Stat_t, experimentalsys.Errno) {
	fi, err := f.root.Stat(rel(p))
	if err != nil {
		return sys.Stat_t{}, errno(err)
	}
	return sys.NewStat_t(fi), 0
}

// Mkdir makes a directory.
func (f *FS) Mkdir(p string, perm fs.FileMode) experimentalsys.Errno {
	if f.readOnly {
		return experimentalsys.EROFS
	}
	return errno(f.root.Mkdir(rel(p), perm))
}

// Chmod changes a file's mode bits.
func (f *FS) Chmod(p string, perm fs.FileMode) experimentalsys.Errno {
	if f.readOnly {
		return experimentalsys.EROFS
	}
	return errno(f.root.Chmod(rel(p), perm))
}

// Rename moves a file or directory within the mount.
func (f *FS) Rename(from, to string) experimentalsys.Errno {
	if f.readOnly {
		return experimentalsys.EROFS
	}
	return errno(f.root.Rename(rel(from), rel(to)))
}

// Rmdir removes an empty directory.
func (f *FS) Rmdir(p string) experimentalsys.Errno {
	if f.readOnly {
		return experimentalsys.EROFS
	}
	name := rel(p)
	fi, err := f.root.Lstat(name)
	if err != nil {
		return errno(err)
	}
	if !fi.IsDir() {
		return experimentalsys.ENOTDIR
	}
	return errno(f.root.Remove(name))
}

// Unlink removes a file (not a directory).
func (f *FS) Unlink(p string) experimentalsys.Errno {
	if f.readOnly {
		return experimentalsys.EROFS
	}
	name := rel(p)
	fi, err := f.root.Lstat(name)
	if err != nil {
		return errno(err)
	}
	if fi.IsDir() {
		return experimentalsys.EISDIR
	}
	return errno(f.root.Remove(name))
}

// Link is refused: a guest makes no hard links.
func (f *FS) Link(oldPath, newPath string) experimentalsys.Errno {
	if f.readOnly {
		return experimentalsys.EROFS
	}
	return experimentalsys.EPERM
}

// Symlink is refused: a guest makes no symbolic links.
func (f *FS) Symlink(oldPath, linkName string) experimentalsys.Errno {
	if f.readOnly {
		return experimentalsys.EROFS
	}
	return experimentalsys.EPERM
}

// Readlink reads a link's text (following it is what os.Root polices).
func (f *FS) Readlink(p string) (string, experimentalsys.Errno) {
	s, err := f.root.Readlink(rel(p))
	if err != nil {
		return "", errno(err)
	}
	return s, 0
}

// Utimens sets a file's access and modification times.
func (f *FS) Utimens(p string, atim, mtim int64) experimentalsys.Errno {
	if f.readOnly {
		return experimentalsys.EROFS
	}
	return errno(f.root.Chtimes(rel(p), toTime(atim), toTime(mtim)))
}

// toTime converts wazero's nanoseconds (UTIME_OMIT: leave it) to what
// Chtimes takes (the zero Time: leave it).
func toTime(ns int64) time.Time {
	if ns == experimentalsys.UTIME_OMIT {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// file is an open file or directory of a mount. It is generic only in its
// offset type (always int64): wazero's File.Seek returns an Errno, not an
// error, and go vet's io.Seeker check would otherwise refuse the method.
type file[off ~int64] struct {
	experimentalsys.UnimplementedFile
	fs     *FS
	name   string // its name in the mount, to reopen a directory
	f      *os.File
	flag   experimentalsys.Oflag
	closed bool
	st     *sys.Stat_t
}

func (x *file[off]) stat() (*sys.Stat_t, experimentalsys.Errno) {
	if x.st == nil {
		if _, e := x.Stat(); e != 0 {
			return nil, e
		}
	}
	return x.st, 0
}

func (x *file[off]) Dev() (uint64, experimentalsys.Errno) {
	st, e := x.stat()
	if e != 0 {
		return 0, e
	}
	return st.Dev, 0
}

func (x *file[off]) Ino() (sys.Inode, experimentalsys.Errno) {
	st, e := x.stat()
	if e != 0 {
		return 0, e
	}
	return st.Ino, 0
}

func (x *file[off]) IsDir() (bool, experimentalsys.Errno) {
	st, e := x.stat()
	if e != 0 {
		return false, e
	}
	return st.Mode.IsDir(), 0
}

func (x *file[off]) IsAppend() bool { return x.flag&experimentalsys.O_APPEND != 0 }

// SetAppend is not supported (it would mean reopening the file by name).
func (x *file[off]) SetAppend(enable bool) experimentalsys.Errno {
	if enable == x.IsAppend() {
		return 0
	}
	return experimentalsys.ENOSYS
}

func (x *file[off]) Stat() (sys.Stat_t, experimentalsys.Errno) {
	if x.closed {
		return sys.Stat_t{}, experimentalsys.EBADF
	}
	fi, err := x.f.Stat()
	if err != nil {
		return sys.Stat_t{}, errno(err)
	}
	st := sys.NewStat_t(fi)
	x.st = &st
	return st, 0
}

func (x *file[off]) Read(buf []byte) (int, experimentalsys.Errno) {
	if len(buf) == 0 {
		return 0, 0
	}
	n, err := x.f.Read(buf)
	return n, errno(err)
}

func (x *file[off]) Pread(buf []byte, at int64) (int, experimentalsys.Errno) {
	if len(buf) == 0 {
		return 0, 0
	}
	n, err := x.f.ReadAt(buf, at)
	return n, errno(err)
}

func (x *file[off]) Seek(offset off, whence int) (int64, experimentalsys.Errno) {
	if x.closed {
		return 0, experimentalsys.EBADF
	}
	if dir, _ := x.IsDir(); dir {
		if offset != 0 || whence != io.SeekStart {
			return 0, experimentalsys.EISDIR
		}
		// Rewind: open the directory again, inside the mount.
		nf, err := x.fs.root.OpenFile(x.name, os.O_RDONLY|oDirectory, 0)
		if err != nil {
			return 0, errno(err)
		}
		a, err1 := x.f.Stat()
		b, err2 := nf.Stat()
		if err1 != nil || err2 != nil || !os.SameFile(a, b) {
			_ = nf.Close()
			return 0, experimentalsys.ENOENT
		}
		_ = x.f.Close()
		x.f = nf
		return 0, 0
	}
	n, err := x.f.Seek(int64(offset), whence)
	return n, errno(err)
}

// Readdir lists up to n entries (all for n <= 0). Each entry is described
// with Lstat through the mount, never by a host path.
func (x *file[off]) Readdir(n int) ([]experimentalsys.Dirent, experimentalsys.Errno) {
	if x.closed {
		return nil, experimentalsys.EBADF
	}
	names, err := x.f.Readdirnames(n)
	if err != nil && !errors.Is(err, io.EOF) {
		e := errno(err)
		if e == experimentalsys.EINVAL || e == experimentalsys.ENOTDIR {
			e = experimentalsys.EBADF
		}
		return nil, e
	}
	out := make([]experimentalsys.Dirent, 0, len(names))
	for _, name := range names {
		fi, err := x.fs.root.Lstat(path.Join(x.name, name))
		if err != nil {
			continue // gone meanwhile
		}
		st := sys.NewStat_t(fi)
		out = append(out, experimentalsys.Dirent{Name: name, Ino: st.Ino, Type: fi.Mode().Type()})
	}
	return out, 0
}

func (x *file[off]) Write(buf []byte) (int, experimentalsys.Errno) {
	if len(buf) == 0 {
		return 0, 0
	}
	if x.fs.readOnly {
		return 0, experimentalsys.EBADF
	}
	n, err := x.f.Write(buf)
	return n, errno(err)
}

func (x *file[off]) Pwrite(buf []byte, at int64) (int, experimentalsys.Errno) {
	if len(buf) == 0 {
		return 0, 0
	}
	if x.fs.readOnly {
		return 0, experimentalsys.EBADF
	}
	n, err := x.f.WriteAt(buf, at)
	return n, errno(err)
}

func (x *file[off]) Truncate(size int64) experimentalsys.Errno {
	if x.fs.readOnly {
		return experimentalsys.EROFS
	}
	if size < 0 {
		return experimentalsys.EINVAL
	}
	return errno(x.f.Truncate(size))
}

func (x *file[off]) Sync() experimentalsys.Errno {
	if x.fs.readOnly {
		return 0
	}
	return errno(x.f.Sync())
}

func (x *file[off]) Datasync() experimentalsys.Errno { return x.Sync() }

// Utimens sets the open file's times, through the mount by its name.
func (x *file[off]) Utimens(atim, mtim int64) experimentalsys.Errno {
	if x.closed {
		return experimentalsys.EBADF
	}
	if x.fs.readOnly {
		return experimentalsys.EROFS
	}
	return errno(x.fs.root.Chtimes(x.name, toTime(atim), toTime(mtim)))
}

func (x *file[off]) Close() experimentalsys.Errno {
	if x.closed {
		return 0
	}
	x.closed = true
	return errno(x.f.Close())
}

var _ experimentalsys.FS = (*FS)(nil)
var _ experimentalsys.File = (*file[int64])(nil)

var _ experimentalsys.FS = (*FS)(nil)
var _ experimentalsys.File = (*file[int64])(nil)
