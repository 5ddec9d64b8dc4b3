package store

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rayhost/rayhost/internal/ids"
)

// fileOf returns the path of id's value file (failing if there is not
// exactly one).
func fileOf(t *testing.T, b *Badger, id ids.ObjectID) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(b.dir, fileDir, idHex(id)+"-*"))
	if err != nil || len(m) != 1 {
		t.Fatalf("value files of %s: %v, %v", id, m, err)
	}
	return m[0]
}

func idHex(id ids.ObjectID) string { return hex.EncodeToString(id[:]) }

// Which values are files: a Put or a streaming write of a known size from
// the threshold on, and a streaming write of unknown size once it has
// filled a chunk; below, chunks or inline. Every one reads back, whole and
// streamed, and after a reopen; the files are the host user's alone.
func TestBadgerFileChoice(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultBadgerConfig(dir)
	b := openBadger(t, cfg)
	chunk := b.ChunkSize()
	tests := []struct {
		name   string
		n      int
		stream bool
		known  bool
		file   bool
	}{
		{"put below", DefaultFileThreshold - 1, false, false, false},
		{"put at", DefaultFileThreshold, false, false, true},
		{"put large", 3*chunk + 5, false, false, true},
		{"stream known below", DefaultFileThreshold - 1, true, true, false},
		{"stream known at", DefaultFileThreshold, true, true, true},
		{"stream unknown below", DefaultFileThreshold - 1, true, false, false},
		{"stream unknown at", DefaultFileThreshold, true, false, true},
		{"stream unknown, a chunk and more", chunk + 1, true, false, true},
		{"put inline", 100, false, false, false},
	}
	written := map[ids.ObjectID][]byte{}
	for i, tt := range tests {
		id, data := newID(), content(uint64(i), tt.n)
		files := countFiles(t, b)
		if !tt.stream {
			mustPut(t, b, id, Meta{Size: -1}, data)
		} else {
			size := int64(-1)
			if tt.known {
				size = int64(tt.n)
			}
			if err := writeAll(t, b, id, Meta{Size: size}, data, 70_000); err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
		}
		if got := countFiles(t, b) - files; got != map[bool]int{true: 1, false: 0}[tt.file] {
			t.Errorf("%s: %d new value files, want file %v", tt.name, got, tt.file)
		}
		mustGet(t, b, id, data)
		mustOpenRead(t, b, id, data, 10_000)
		written[id] = data
	}
	// Only the host's user may read them.
	if info, err := os.Stat(filepath.Join(dir, fileDir)); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("the values' directory: %v, %v; want mode 0700", info.Mode(), err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, fileDir, "*"))
	for _, f := range files {
		if info, err := os.Stat(f); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("value file %s: %v, %v; want mode 0600", filepath.Base(f), info.Mode(), err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openBadger(t, cfg)
	checkAll(t, b, written)
}

// A deleted file value's space is back at once, with no reclaim round: a
// store filled to its quota with file values takes as many again after
// they are deleted, and its directory is back near its start.
func TestBadgerFileSpaceBackAtOnce(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultBadgerConfig(dir)
	cfg.GCInterval = -1
	cfg.ReclaimAfter = 1 << 40 // no round on its own
	cfg.Quota = 32 << 20
	b, rounds := openWithRounds(t, cfg)
	start := usage(t, dir)
	first := fillUntilFull(t, b, 1<<20, 100)
	if countFiles(t, b) != len(first) {
		t.Fatalf("%d value files for %d objects", countFiles(t, b), len(first))
	}
	for id := range first {
		if err := b.Delete(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	if n := countFiles(t, b); n != 0 {
		t.Fatalf("%d value files after deleting every object", n)
	}
	if after := usage(t, dir); after > start+(4<<20) {
		t.Fatalf("after deleting every object the store takes %.1f MiB, %.1f at the start", mib(after), mib(start))
	}
	// The next write fits without waiting for a round.
	id := newID()
	mustPut(t, b, id, Meta{Size: -1}, content(3, 1<<20))
	select {
	case st := <-rounds:
		t.Fatalf("a round ran before the write after the deletes: %+v", st)
	default:
	}
	if err := b.Delete(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	second := fillUntilFull(t, b, 1<<20, 100)
	if len(second) < len(first)-1 {
		t.Fatalf("%d objects filled the store, and after deleting them only %d fit again", len(first), len(second))
	}
	checkAll(t, b, second)
}

// A damaged value file is ErrCorrupt, whole and streamed (the stream's
// last Read fails): a flipped byte, a short file, a long one, a missing one.
func TestBadgerFileCorrupt(t *testing.T) {
	for _, tt := range []struct {
		name   string
		damage func(path string) error
	}{
		{"flipped byte", func(p string) error {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte{0xff ^ content(1, 400_000)[123_456]}, 123_456)
			return err
		}},
		{"short", func(p string) error { return os.Truncate(p, 399_999) }},
		{"long", func(p string) error {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte("x"))
			return err
		}},
		{"missing", os.Remove},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := openBadger(t, DefaultBadgerConfig(t.TempDir()))
			id := newID()
			mustPut(t, b, id, Meta{Size: -1}, content(1, 400_000))
			if err := tt.damage(fileOf(t, b, id)); err != nil {
				t.Fatal(err)
			}
			_, _, err := b.Get(t.Context(), id)
			wantErr(t, "Get", err, ErrCorrupt)
			_, r, err := b.Open(t.Context(), id)
			if err == nil {
				_, err = io.ReadAll(r)
				r.Close()
			}
			wantErr(t, "Open and read", err, ErrCorrupt)
			if _, err := b.Stat(t.Context(), id); err != nil {
				t.Fatalf("Stat: %v", err)
			}
			// It can be deleted, and the id put again.
			if err := b.Delete(t.Context(), id); err != nil {
				t.Fatal(err)
			}
			mustPut(t, b, id, Meta{Size: -1}, content(2, 400_000))
			mustGet(t, b, id, content(2, 400_000))
		})
	}
}

// A reader opened before a Delete reads the value it opened, whole and
// checked, even once the id is put again; a read that finds the file gone
// because the object was deleted since its record was read is ErrNotFound,
// not ErrCorrupt.
func TestBadgerFileDeleteWhileReading(t *testing.T) {
	b := openBadger(t, DefaultBadgerConfig(t.TempDir()))
	id, old := newID(), content(1, 3<<20)
	mustPut(t, b, id, Meta{Size: -1}, old)
	_, r, err := b.Open(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	head := make([]byte, 10)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}
	var rec record
	if rec, err = getRecordView(b.db, id); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	fresh := content(2, 3<<20)
	mustPut(t, b, id, Meta{Size: -1}, fresh)
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("Read after delete: %v", err)
	}
	if !bytes.Equal(append(head, rest...), old) {
		t.Fatal("the reader opened before the delete read other bytes")
	}
	mustGet(t, b, id, fresh)
	// The record read before the delete names a file that is gone.
	_, err = b.openFile(id, &rec)
	wantErr(t, "opening the deleted generation", err, ErrNotFound)
	_, err = b.readFile(id, &rec)
	wantErr(t, "reading the deleted generation", err, ErrNotFound)
}

// Files no record points at (a crash mid-write, or between the two steps
// of Delete) are removed when the store opens again; files of live objects
// and names that are not value files are left.
func TestBadgerFileSweep(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultBadgerConfig(dir)
	b := openBadger(t, cfg)
	live, data := newID(), content(1, 1<<20)
	mustPut(t, b, live, Meta{Size: -1}, data)
	deleted := newID()
	mustPut(t, b, deleted, Meta{Size: -1}, content(2, 1<<20))
	kept, err := os.ReadFile(fileOf(t, b, deleted))
	if err != nil {
		t.Fatal(err)
	}
	deletedPath := fileOf(t, b, deleted)
	if err := b.Delete(t.Context(), deleted); err != nil {
		t.Fatal(err)
	}
	livePath := fileOf(t, b, live)
	_, liveGen, _ := parseFileName(filepath.Base(livePath))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	blobs := filepath.Join(dir, fileDir)
	orphans := []string{
		deletedPath, // deleted, its file left
		filepath.Join(blobs, idHex(newID())+"-0"),                               // never committed
		filepath.Join(blobs, idHex(live)+"-"+strconv.FormatUint(liveGen+1, 16)), // another generation of a live object
	}
	for _, p := range orphans {
		if err := os.WriteFile(p, kept, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	stranger := filepath.Join(blobs, "README")
	if err := os.WriteFile(stranger, []byte("not a value"), 0o600); err != nil {
		t.Fatal(err)
	}
	b = openBadger(t, cfg)
	select {
	case <-b.swept:
	case <-time.After(hangGuard):
		t.Fatal("the sweep did not end")
	}
	for _, p := range orphans {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("orphan %s: %v, want removed", filepath.Base(p), err)
		}
	}
	for _, p := range []string{livePath, stranger} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v, want kept", filepath.Base(p), err)
		}
	}
	mustGet(t, b, live, data)
}

// An aborted or failed streaming write, and one cut short by Close, leave
// no file behind; so does a Put that loses the race to another of the same
// id.
func TestBadgerFileAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	b := openBadger(t, DefaultBadgerConfig(dir))
	ctx := t.Context()
	w, err := b.Create(ctx, newID(), Meta{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(content(1, 2<<20)); err != nil {
		t.Fatal(err)
	}
	if countFiles(t, b) != 1 {
		t.Fatalf("%d value files while writing, want 1", countFiles(t, b))
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if n := countFiles(t, b); n != 0 {
		t.Fatalf("%d value files after Abort", n)
	}
	// A size mismatch at Commit.
	w, err = b.Create(ctx, newID(), Meta{Size: 3 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(content(1, 2<<20)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Commit short", w.Commit(ctx), ErrSizeMismatch)
	if n := countFiles(t, b); n != 0 {
		t.Fatalf("%d value files after a failed Commit", n)
	}
	// An id that exists: the second Put keeps the first value, no file.
	id := newID()
	mustPut(t, b, id, Meta{Size: -1}, content(1, 1<<20))
	mustPut(t, b, id, Meta{Size: -1}, content(2, 1<<20))
	mustGet(t, b, id, content(1, 1<<20))
	if n := countFiles(t, b); n != 1 {
		t.Fatalf("%d value files for one object", n)
	}
	// Close with a writer open.
	w, err = b.Create(ctx, newID(), Meta{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(content(1, 2<<20)); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, fileDir, "*")); len(m) != 1 {
		t.Fatalf("value files after Close with a writer open: %v, want only the committed one", m)
	}
}

// With SyncWrites a value file and its directory entry are synced before
// its record is written (found missing by an attack review); the value
// reads back after a reopen.
func TestBadgerFileSyncWrites(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultBadgerConfig(dir)
	cfg.SyncWrites = true
	b := openBadger(t, cfg)
	id, data := newID(), content(1, 1<<20)
	mustPut(t, b, id, Meta{Size: -1}, data)
	if err := writeAll(t, b, newID(), Meta{Size: -1}, data, 100_000); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	mustGet(t, openBadger(t, cfg), id, data)
}
