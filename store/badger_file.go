// This file holds the Badger store's large values: objects of at least
// fileThreshold bytes are files of their own under Dir/blobs, named by
// object and generation, not chunks in Badger's value log. Written with
// write(2) and removed by Delete, their space is back at once: no value-log
// file to fill and collect, no memory-mapped pages to fault in and sync
// (docs/RATIONALE.md "Large values are files").

package store

import (
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/rayhost/rayhost/internal/ids"
)

// fileDir is the directory of the files, under the store's. A value is a
// file if it is at least BadgerConfig.FileThreshold bytes: a Put of that
// many, or a streaming write whose size is known to be that many, or that
// has written that many by its first full chunk or its Commit (with a
// chunk size below the threshold, an object of unknown size that fills a
// chunk first stays in chunks).
const fileDir = "blobs"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// filePath is the file of generation gen of id.
func (b *Badger) filePath(id ids.ObjectID, gen uint64) string {
	return filepath.Join(b.dir, fileDir, hex.EncodeToString(id[:])+"-"+strconv.FormatUint(gen, 16))
}

// parseFileName is the inverse of filePath's base name.
func parseFileName(name string) (id ids.ObjectID, gen uint64, ok bool) {
	h, g, found := strings.Cut(name, "-")
	if !found || hex.DecodedLen(len(h)) != len(id) {
		return id, 0, false
	}
	if _, err := hex.Decode(id[:], []byte(h)); err != nil {
		return id, 0, false
	}
	gen, err := strconv.ParseUint(g, 16, 64)
	return id, gen, err == nil
}

// fileSink is the file a sink writes its object into.
type fileSink struct {
	f    *os.File
	path string
	sum  uint32
	n    int64
}

func (b *Badger) createFile(id ids.ObjectID, gen uint64) (*fileSink, error) {
	path := b.filePath(id, gen)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(path), 0o700); err == nil && b.syncWrites {
			err = syncDir(b.dir) // the new directory's entry
		}
		if err == nil {
			f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("creating the value's file: %w", err)
	}
	return &fileSink{f: f, path: path}, nil
}

func (s *fileSink) write(p []byte) error {
	if _, err := s.f.Write(p); err != nil {
		return fmt.Errorf("writing the value's file: %w", err)
	}
	s.sum = crc32.Update(s.sum, castagnoli, p)
	s.n += int64(len(p))
	return nil
}

// finish closes the file, syncing it (and its directory entry) first if
// sync: with SyncWrites, its record is written only once both are durable.
func (s *fileSink) finish(sync bool) error {
	var err error
	if sync {
		err = s.f.Sync()
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	if err == nil && sync {
		err = syncDir(filepath.Dir(s.path))
	}
	if err != nil {
		return fmt.Errorf("closing the value's file: %w", err)
	}
	return nil
}

// remove closes (if open) and removes the file.
func (s *fileSink) remove() error {
	_ = s.f.Close()
	if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the value's file: %w", err)
	}
	return nil
}

// removeFile removes the file of rec, a deleted object's.
func (b *Badger) removeFile(id ids.ObjectID, rec *record) error {
	if err := os.Remove(b.filePath(id, rec.gen)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// openFile opens the file of rec. A file that is gone because the object
// was deleted (and perhaps put again) since rec was read is ErrNotFound; a
// file gone while its record is there, ErrCorrupt.
func (b *Badger) openFile(id ids.ObjectID, rec *record) (*os.File, error) {
	f, err := os.Open(b.filePath(id, rec.gen))
	if err == nil {
		return f, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return nil, b.goneWhileReading(id, rec, fmt.Errorf("%w: object %s: its file is missing", ErrCorrupt, id))
}

// goneWhileReading returns ErrNotFound if the object of rec was deleted
// since rec was read, else err.
func (b *Badger) goneWhileReading(id ids.ObjectID, rec *record, err error) error {
	cur, serr := getRecordView(b.db, id)
	if errors.Is(serr, ErrNotFound) || (serr == nil && (cur.inline || cur.file != rec.file || cur.gen != rec.gen)) {
		return fmt.Errorf("%w: %s deleted while reading", ErrNotFound, id)
	}
	return err
}

// readFile reads the whole value of rec from its file, checking its size
// and checksum.
func (b *Badger) readFile(id ids.ObjectID, rec *record) ([]byte, error) {
	f, err := b.openFile(id, rec)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data := make([]byte, rec.meta.Size)
	n, err := io.ReadFull(f, data)
	if err != nil {
		return nil, fmt.Errorf("%w: object %s: its file has %d bytes, want %d (%v)", ErrCorrupt, id, n, rec.meta.Size, err)
	}
	if extra, _ := f.Read(make([]byte, 1)); extra > 0 {
		return nil, fmt.Errorf("%w: object %s: its file is longer than %d bytes", ErrCorrupt, id, rec.meta.Size)
	}
	if sum := crc32.Checksum(data, castagnoli); sum != rec.sum {
		return nil, fmt.Errorf("%w: object %s: checksum %08x, want %08x", ErrCorrupt, id, sum, rec.sum)
	}
	return data, nil
}

// fileReader streams a file value, checking its size and checksum at the
// end: the last Read before io.EOF fails with ErrCorrupt if they differ.
type fileReader struct {
	b    *Badger
	id   ids.ObjectID
	f    *os.File
	want int64
	sum  uint32 // the record's
	got  uint32 // of the bytes read
	n    int64
}

func (r *fileReader) Read(p []byte) (int, error) {
	if r.f == nil {
		return 0, ErrClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := r.b.acquire(); err != nil {
		return 0, err
	}
	defer r.b.release()
	if rest := r.want - r.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	if len(p) == 0 {
		if r.got != r.sum {
			return 0, fmt.Errorf("%w: object %s: checksum %08x, want %08x", ErrCorrupt, r.id, r.got, r.sum)
		}
		if n, _ := r.f.Read(make([]byte, 1)); n > 0 {
			return 0, fmt.Errorf("%w: object %s: its file is longer than %d bytes", ErrCorrupt, r.id, r.want)
		}
		return 0, io.EOF
	}
	n, err := r.f.Read(p)
	r.got = crc32.Update(r.got, castagnoli, p[:n])
	r.n += int64(n)
	if errors.Is(err, io.EOF) {
		if r.n < r.want {
			return n, fmt.Errorf("%w: object %s: its file has %d bytes, want %d", ErrCorrupt, r.id, r.n, r.want)
		}
		err = nil
	}
	if err != nil {
		return n, fmt.Errorf("store: read %s: %w", r.id, err)
	}
	return n, nil
}

func (r *fileReader) Close() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// sweepFiles removes the files of generations made by earlier runs that no
// record points at: left by a crash mid-write, or between the two steps of
// Delete. It returns the files removed and their bytes.
func (b *Badger) sweepFiles() (int, int64, error) {
	entries, err := os.ReadDir(filepath.Join(b.dir, fileDir))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	removed := 0
	var bytes int64
	for _, e := range entries {
		select {
		case <-b.stop:
			return removed, bytes, errStopped
		default:
		}
		id, gen, ok := parseFileName(e.Name())
		if !ok || e.IsDir() {
			b.log.Warn("store: unexpected file among the values", "name", e.Name())
			continue
		}
		if gen >= b.firstGen {
			continue
		}
		rec, err := getRecordView(b.db, id)
		switch {
		case err == nil && rec.file && rec.gen == gen:
			continue
		case err != nil && !errors.Is(err, ErrNotFound):
			return removed, bytes, err
		}
		var size int64
		if info, err := e.Info(); err == nil {
			size = info.Size()
		}
		if err := os.Remove(filepath.Join(b.dir, fileDir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, bytes, err
		}
		removed++
		bytes += size
	}
	return removed, bytes, nil
}

// syncDir makes the entries of directory dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
