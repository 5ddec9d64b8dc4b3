package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/rayhost/rayhost/internal/ids"
)

// Encoding of the value of a metadata key (version 1):
//
//	version   byte = 1
//	flags     byte   bit 0: the value is inline (follows the header);
//	                 bit 1: the value is a file of its own (blobs/)
//	codec     byte
//	task      [16]byte
//	size      uvarint
//	created   varint seconds since the Unix epoch, uvarint nanoseconds
//	owner     uvarint length, bytes
//	if in chunks (neither flag):
//	  gen       uvarint   generation of the chunk keys
//	  chunkSize uvarint   bytes per chunk (the last chunk may be shorter)
//	if a file:
//	  gen       uvarint   generation in the file's name
//	  crc       [4]byte   CRC-32C (Castagnoli) of the value, big-endian
//	if inline:
//	  data      the remaining bytes (exactly size of them)
//
// The chunk size is recorded per object, so a store reopened with another
// ChunkSize still reads old objects.
const (
	metaVersion1 = 1

	flagInline = 1 << 0
	flagFile   = 1 << 1
	knownFlags = flagInline | flagFile

	// maxSize bounds a decoded size, so arithmetic on it cannot overflow.
	maxSize = math.MaxInt64 / 4
)

// record is the decoded value of a metadata key.
type record struct {
	meta      Meta
	inline    bool
	file      bool   // the value is a file of its own (blobPath)
	gen       uint64 // of the chunk keys, or in the file's name
	chunkSize int64
	sum       uint32 // of a file: CRC-32C of the value
	data      []byte // inline value; aliases the encoded bytes
}

// chunks returns the number of chunks of a non-inline record.
func (r *record) chunks() uint32 {
	if r.inline || r.file || r.meta.Size == 0 {
		return 0
	}
	return uint32((r.meta.Size + r.chunkSize - 1) / r.chunkSize)
}

// chunkLen returns the length chunk i must have.
func (r *record) chunkLen(i uint32) int64 {
	off := int64(i) * r.chunkSize
	return min(r.chunkSize, r.meta.Size-off)
}

// appendRecord appends the encoding of r to dst.
func appendRecord(dst []byte, r *record) []byte {
	var flags byte
	if r.inline {
		flags |= flagInline
	}
	if r.file {
		flags |= flagFile
	}
	dst = append(dst, metaVersion1, flags, byte(r.meta.Codec))
	dst = append(dst, r.meta.Task[:]...)
	dst = binary.AppendUvarint(dst, uint64(r.meta.Size))
	dst = binary.AppendVarint(dst, r.meta.Created.Unix())
	dst = binary.AppendUvarint(dst, uint64(r.meta.Created.Nanosecond()))
	dst = binary.AppendUvarint(dst, uint64(len(r.meta.Owner)))
	dst = append(dst, r.meta.Owner...)
	if r.inline {
		return append(dst, r.data...)
	}
	dst = binary.AppendUvarint(dst, r.gen)
	if r.file {
		return binary.BigEndian.AppendUint32(dst, r.sum)
	}
	return binary.AppendUvarint(dst, uint64(r.chunkSize))
}

// decodeRecord decodes a metadata value. The inline data in the result
// aliases b.
func decodeRecord(b []byte) (record, error) {
	var r record
	d := decoder{b: b}
	version := d.byte()
	if d.err == nil && version != metaVersion1 {
		return r, fmt.Errorf("%w: metadata version %d", ErrCorrupt, version)
	}
	flags := d.byte()
	if d.err == nil && flags&^knownFlags != 0 {
		return r, fmt.Errorf("%w: metadata flags %#x", ErrCorrupt, flags)
	}
	r.inline = flags&flagInline != 0
	r.file = flags&flagFile != 0
	if r.inline && r.file {
		return r, fmt.Errorf("%w: metadata flags %#x: inline and a file", ErrCorrupt, flags)
	}
	r.meta.Codec = Codec(d.byte())
	copy(r.meta.Task[:], d.bytes(ids.TaskIDSize))
	size := d.uvarint()
	sec := d.varint()
	nsec := d.uvarint()
	ownerLen := d.uvarint()
	if d.err == nil && ownerLen > uint64(len(d.b)) {
		d.err = errTruncated
	}
	owner := d.bytes(int(ownerLen))
	if d.err != nil {
		return r, fmt.Errorf("%w: metadata: %v", ErrCorrupt, d.err)
	}
	if size > maxSize || nsec >= 1e9 {
		return r, fmt.Errorf("%w: metadata size %d or time %d.%d out of range", ErrCorrupt, size, sec, nsec)
	}
	r.meta.Size = int64(size)
	r.meta.Created = time.Unix(sec, int64(nsec)).UTC()
	r.meta.Owner = string(owner)
	if r.inline {
		if uint64(len(d.b)) != size {
			return r, fmt.Errorf("%w: inline value of %d bytes, metadata says %d", ErrCorrupt, len(d.b), size)
		}
		r.data = d.b
		return r, nil
	}
	r.gen = d.uvarint()
	if r.file {
		sum := d.bytes(4)
		switch {
		case d.err != nil:
			return r, fmt.Errorf("%w: metadata: %v", ErrCorrupt, d.err)
		case len(d.b) != 0:
			return r, fmt.Errorf("%w: metadata: %d trailing bytes", ErrCorrupt, len(d.b))
		}
		r.sum = binary.BigEndian.Uint32(sum)
		return r, nil
	}
	chunk := d.uvarint()
	switch {
	case d.err != nil:
		return r, fmt.Errorf("%w: metadata: %v", ErrCorrupt, d.err)
	case len(d.b) != 0:
		return r, fmt.Errorf("%w: metadata: %d trailing bytes", ErrCorrupt, len(d.b))
	case chunk == 0 || chunk > math.MaxInt32:
		return r, fmt.Errorf("%w: metadata chunk size %d", ErrCorrupt, chunk)
	case (size+chunk-1)/chunk > math.MaxUint32:
		return r, fmt.Errorf("%w: metadata: %d bytes in chunks of %d is too many chunks", ErrCorrupt, size, chunk)
	}
	r.chunkSize = int64(chunk)
	return r, nil
}

var errTruncated = errors.New("truncated or malformed field")

// decoder reads fields, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.err = errTruncated
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = errTruncated
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}
