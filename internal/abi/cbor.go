package abi

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"unicode/utf8"

	"github.com/rayhost/rayhost/internal/ids"
)

// A CodecCBOR value is one CBOR data item (RFC 8949) whose JSON form is
// what clients, and guests of modules that do not list "cbor", get (ABI.md
// §9). The host never decodes it into Go values: it walks the bytes, to
// convert them to JSON and to find the ObjectRefs and actor handles inside
// (two tags of its own, below). The walk refuses what has no JSON form or
// could cost unbounded work: indefinite lengths, nesting deeper than
// MaxCBORDepth, trailing bytes, NaN and infinities, simple values other than
// false, true, null and undefined, map keys other than text and integers.
// Text that is not UTF-8 converts as encoding/json converts such a Go
// string (U+FFFD for each bad byte).

// The tags of rayhost's references inside a CBOR value, from the
// first-come-first-served range of the IANA registry (not registered):
// 0x52415901 and 0x52415902, "RAY" and a number, so their 5-byte heads
// (0xda 'R' 'A' 'Y' n) are what a cheap scan looks for.
const (
	// TagObjectRef wraps [ObjectID (a 20-byte byte string), owner (text)]:
	// an ObjectRef, {"object_id": hex, "owner": addr} in JSON.
	TagObjectRef uint64 = 0x52415901
	// TagActor wraps [TaskID (a 16-byte byte string), owner (text)]: an
	// actor handle, {"actor_id": hex, "owner": addr} in JSON.
	TagActor uint64 = 0x52415902
)

// MaxCBORDepth bounds the nesting of arrays, maps and tags in a CBOR value.
const MaxCBORDepth = 256

// MaxBignumBytes bounds the content of a bignum (tags 2 and 3) the host
// converts to a JSON number.
const MaxBignumBytes = 64

// ErrCBOR: a CodecCBOR value is not a well-formed CBOR item the host
// converts (the error says why and where).
var ErrCBOR = errors.New("abi: cbor value")

var (
	refHead   = []byte{0xda, 'R', 'A', 'Y', 0x01}
	actorHead = []byte{0xda, 'R', 'A', 'Y', 0x02}
)

// AppendRefCBOR appends the CBOR of an ObjectRef (TagObjectRef).
func AppendRefCBOR(dst []byte, r Ref) []byte {
	dst = append(dst, refHead...)
	dst = append(dst, 0x82, 0x40|24, ids.ObjectIDSize)
	dst = append(dst, r.ID[:]...)
	return appendTextCBOR(dst, r.Owner)
}

// AppendActorCBOR appends the CBOR of an actor handle (TagActor).
func AppendActorCBOR(dst []byte, actor ids.TaskID, owner string) []byte {
	dst = append(dst, actorHead...)
	dst = append(dst, 0x82, 0x40|ids.TaskIDSize)
	dst = append(dst, actor[:]...)
	return appendTextCBOR(dst, owner)
}

func appendTextCBOR(dst []byte, s string) []byte {
	n := uint64(len(s))
	switch {
	case n < 24:
		dst = append(dst, 0x60|byte(n))
	case n <= math.MaxUint8:
		dst = append(dst, 0x60|24, byte(n))
	case n <= math.MaxUint16:
		dst = binary.BigEndian.AppendUint16(append(dst, 0x60|25), uint16(n))
	case n <= math.MaxUint32:
		dst = binary.BigEndian.AppendUint32(append(dst, 0x60|26), uint32(n))
	default:
		dst = binary.BigEndian.AppendUint64(append(dst, 0x60|27), n)
	}
	return append(dst, s...)
}

// DecodeRefCBOR decodes what AppendRefCBOR writes, the whole of b.
func DecodeRefCBOR(b []byte) (Ref, error) {
	w := cborWalk{data: b}
	tag, ok := w.tagHead()
	if !ok || tag != TagObjectRef {
		return Ref{}, fmt.Errorf("%w: not an ObjectRef (tag %#x)", ErrCBOR, TagObjectRef)
	}
	id, owner, err := w.refContent(ids.ObjectIDSize)
	if err == nil && w.pos != len(b) {
		err = w.errf("trailing bytes")
	}
	if err != nil {
		return Ref{}, err
	}
	var r Ref
	copy(r.ID[:], id)
	r.Owner = owner
	return r, nil
}

// DecodeActorCBOR decodes what AppendActorCBOR writes, the whole of b.
func DecodeActorCBOR(b []byte) (ids.TaskID, string, error) {
	w := cborWalk{data: b}
	tag, ok := w.tagHead()
	if !ok || tag != TagActor {
		return ids.TaskID{}, "", fmt.Errorf("%w: not an actor handle (tag %#x)", ErrCBOR, TagActor)
	}
	id, owner, err := w.refContent(ids.TaskIDSize)
	if err == nil && w.pos != len(b) {
		err = w.errf("trailing bytes")
	}
	if err != nil {
		return ids.TaskID{}, "", err
	}
	var t ids.TaskID
	copy(t[:], id)
	return t, owner, nil
}

// CBORToJSON appends the JSON form of the CBOR item data to dst (ABI.md
// §9): byte strings become base64 strings (as encoding/json writes a
// []byte), integer map keys decimal strings, undefined null, the two
// reference tags their JSON objects, a bignum its number; other tags are
// their content. It writes at most MaxCBORJSON(len(data)) bytes.
func CBORToJSON(dst, data []byte) ([]byte, error) {
	w := cborWalk{data: data, out: dst, json: true}
	if err := w.all(); err != nil {
		return dst, err
	}
	return w.out, nil
}

// ValidCBOR reports why data is not a CodecCBOR value the host converts
// (nil if it is).
func ValidCBOR(data []byte) error {
	w := cborWalk{data: data}
	return w.all()
}

// MaxCBORJSON is the most bytes the JSON of n bytes of CodecCBOR takes:
// 9 a byte (a 3-byte half float is at most 25 characters and a comma, as
// -0.0000030398368835449219; a 1-byte false, 5). A size too large (or
// negative: a peer's lie) to bound is math.MaxInt64.
func MaxCBORJSON(n int64) int64 {
	if n < 0 || n > math.MaxInt64/9 {
		return math.MaxInt64
	}
	return 9 * n
}

// MaxJSON is the most bytes the JSON of a value of codec c and n bytes
// takes, as a client gets it (n for codecs it gets as they are).
func MaxJSON(c Codec, n int64) int64 {
	switch c {
	case CodecInts:
		return MaxIntsJSON(n)
	case CodecCBOR:
		return MaxCBORJSON(n)
	}
	return n
}

// cborWalk walks one CBOR item; with json set it writes its JSON to out
// (and refuses what has none); with refs (actors) set it collects the
// ObjectRefs (actor handles). Without json it checks only the structure
// (and the references' form): a value whose JSON conversion fails (a NaN)
// still has its references counted.
type cborWalk struct {
	data   []byte
	pos    int
	out    []byte
	json   bool
	refs   *[]Ref
	actors *[]Ref
}

func (w *cborWalk) errf(format string, args ...any) error {
	return fmt.Errorf("%w: %s at byte %d", ErrCBOR, fmt.Sprintf(format, args...), w.pos)
}

func (w *cborWalk) all() error {
	if len(w.data) == 0 {
		return w.errf("empty")
	}
	if err := w.item(0); err != nil {
		return err
	}
	if w.pos != len(w.data) {
		return w.errf("trailing bytes")
	}
	return nil
}

// head reads an item's initial byte and argument.
func (w *cborWalk) head() (major byte, ai byte, arg uint64, err error) {
	if w.pos >= len(w.data) {
		return 0, 0, 0, w.errf("truncated")
	}
	b := w.data[w.pos]
	w.pos++
	major, ai = b>>5, b&31
	var n int
	switch {
	case ai < 24:
		return major, ai, uint64(ai), nil
	case ai == 24:
		n = 1
	case ai == 25:
		n = 2
	case ai == 26:
		n = 4
	case ai == 27:
		n = 8
	case ai == 31:
		return 0, 0, 0, w.errf("indefinite length or break")
	default:
		return 0, 0, 0, w.errf("reserved additional information %d", ai)
	}
	if len(w.data)-w.pos < n {
		return 0, 0, 0, w.errf("truncated")
	}
	for _, c := range w.data[w.pos : w.pos+n] {
		arg = arg<<8 | uint64(c)
	}
	w.pos += n
	return major, ai, arg, nil
}

// tagHead reads a tag's head, if the next item is one.
func (w *cborWalk) tagHead() (uint64, bool) {
	major, _, arg, err := w.head()
	return arg, err == nil && major == 6
}

// take returns the next n bytes of a string.
func (w *cborWalk) take(n uint64) ([]byte, error) {
	if n > uint64(len(w.data)-w.pos) {
		return nil, w.errf("a string of %d bytes past the end", n)
	}
	b := w.data[w.pos : w.pos+int(n)]
	w.pos += int(n)
	return b, nil
}

// count checks that n items, each at least per bytes, fit in what is left.
func (w *cborWalk) count(n uint64, per uint64) error {
	if n > uint64(len(w.data)-w.pos)/per {
		return w.errf("%d items past the end", n)
	}
	return nil
}

func (w *cborWalk) text() (string, error) {
	major, _, n, err := w.head()
	if err != nil {
		return "", err
	}
	if major != 3 {
		return "", w.errf("not a text string")
	}
	b, err := w.take(n)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", w.errf("text not UTF-8")
	}
	return string(b), nil
}

// refContent reads a reference tag's content: [ID (size bytes), owner].
func (w *cborWalk) refContent(size int) ([]byte, string, error) {
	major, _, n, err := w.head()
	if err != nil {
		return nil, "", err
	}
	if major != 4 || n != 2 {
		return nil, "", w.errf("a reference is not [id, owner]")
	}
	major, _, n, err = w.head()
	if err != nil {
		return nil, "", err
	}
	if major != 2 || n != uint64(size) {
		return nil, "", w.errf("a reference's id is not a %d-byte string", size)
	}
	id, err := w.take(n)
	if err != nil {
		return nil, "", err
	}
	owner, err := w.text()
	return id, owner, err
}

func (w *cborWalk) item(depth int) error {
	if depth > MaxCBORDepth {
		return w.errf("nested deeper than %d", MaxCBORDepth)
	}
	start := w.pos
	major, ai, arg, err := w.head()
	if err != nil {
		return err
	}
	switch major {
	case 0:
		if w.json {
			w.out = strconv.AppendUint(w.out, arg, 10)
		}
	case 1:
		if w.json {
			w.out = appendNegative(w.out, arg)
		}
	case 2:
		b, err := w.take(arg)
		if err != nil {
			return err
		}
		if w.json {
			w.out = append(w.out, '"')
			w.out = base64.StdEncoding.AppendEncode(w.out, b)
			w.out = append(w.out, '"')
		}
	case 3:
		b, err := w.take(arg)
		if err != nil {
			return err
		}
		if w.json {
			w.out = appendJSONString(w.out, b)
		}
	case 4:
		if err := w.count(arg, 1); err != nil {
			return err
		}
		if w.json {
			w.out = append(w.out, '[')
		}
		for i := uint64(0); i < arg; i++ {
			if w.json && i > 0 {
				w.out = append(w.out, ',')
			}
			if err := w.item(depth + 1); err != nil {
				return err
			}
		}
		if w.json {
			w.out = append(w.out, ']')
		}
	case 5:
		if err := w.count(arg, 2); err != nil {
			return err
		}
		if w.json {
			w.out = append(w.out, '{')
		}
		for i := uint64(0); i < arg; i++ {
			if w.json && i > 0 {
				w.out = append(w.out, ',')
			}
			if err := w.key(depth + 1); err != nil {
				return err
			}
			if w.json {
				w.out = append(w.out, ':')
			}
			if err := w.item(depth + 1); err != nil {
				return err
			}
		}
		if w.json {
			w.out = append(w.out, '}')
		}
	case 6:
		return w.tagged(arg, depth)
	case 7:
		return w.simple(ai, arg, start)
	}
	return nil
}

// key converts a map key: text as it is, an integer as its decimal text.
func (w *cborWalk) key(depth int) error {
	if !w.json { // only looking for references: any key walks
		return w.item(depth)
	}
	major, _, arg, err := w.head()
	if err != nil {
		return err
	}
	switch major {
	case 0:
		if w.json {
			w.out = append(strconv.AppendUint(append(w.out, '"'), arg, 10), '"')
		}
	case 1:
		if w.json {
			w.out = append(appendNegative(append(w.out, '"'), arg), '"')
		}
	case 3:
		b, err := w.take(arg)
		if err != nil {
			return err
		}
		if w.json {
			w.out = appendJSONString(w.out, b)
		}
	default:
		return w.errf("a map key of major type %d has no JSON form (text and integers do)", major)
	}
	return nil
}

func (w *cborWalk) tagged(tag uint64, depth int) error {
	switch tag {
	case TagObjectRef, TagActor:
		size := ids.ObjectIDSize
		if tag == TagActor {
			size = ids.TaskIDSize
		}
		id, owner, err := w.refContent(size)
		if err != nil {
			return err
		}
		if tag == TagObjectRef && w.refs != nil {
			var r Ref
			copy(r.ID[:], id)
			r.Owner = owner
			*w.refs = append(*w.refs, r)
		}
		if tag == TagActor && w.actors != nil {
			var t ids.TaskID
			copy(t[:], id)
			*w.actors = append(*w.actors, Ref{ID: ActorRef(t), Owner: owner})
		}
		if w.json {
			key := `{"object_id":"`
			if tag == TagActor {
				key = `{"actor_id":"`
			}
			w.out = hex.AppendEncode(append(w.out, key...), id)
			w.out = append(w.out, '"')
			if owner != "" { // omitted when empty, as the SDK's MarshalJSON does
				w.out = appendJSONString(append(w.out, `,"owner":`...), []byte(owner))
			}
			w.out = append(w.out, '}')
		}
		return nil
	case 2, 3:
		if !w.json {
			break
		}
		major, _, n, err := w.head()
		if err != nil {
			return err
		}
		if major != 2 {
			return w.errf("a bignum's content is not a byte string")
		}
		if n > MaxBignumBytes {
			return w.errf("a bignum of %d bytes (the most is %d)", n, MaxBignumBytes)
		}
		b, err := w.take(n)
		if err != nil {
			return err
		}
		if w.json {
			x := new(big.Int).SetBytes(b)
			if tag == 3 {
				x.Neg(x.Add(x, big.NewInt(1)))
			}
			w.out = x.Append(w.out, 10)
		}
		return nil
	}
	return w.item(depth + 1) // another tag: its content
}

func (w *cborWalk) simple(ai byte, arg uint64, start int) error {
	if !w.json { // only looking for references
		return nil
	}
	var f float64
	switch ai {
	case 20:
		if w.json {
			w.out = append(w.out, "false"...)
		}
		return nil
	case 21:
		if w.json {
			w.out = append(w.out, "true"...)
		}
		return nil
	case 22, 23:
		if w.json {
			w.out = append(w.out, "null"...)
		}
		return nil
	case 25:
		f = halfToFloat(uint16(arg))
	case 26:
		f = float64(math.Float32frombits(uint32(arg)))
	case 27:
		f = math.Float64frombits(arg)
	default:
		w.pos = start
		return w.errf("simple value %d has no JSON form", arg)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		w.pos = start
		return w.errf("%v has no JSON form", f)
	}
	if w.json {
		bits := 64
		if ai == 26 {
			bits = 32 // as encoding/json writes a float32
		}
		w.out = appendJSONFloat(w.out, f, bits)
	}
	return nil
}

// appendNegative appends -1-n.
func appendNegative(dst []byte, n uint64) []byte {
	if n == math.MaxUint64 {
		return append(dst, "-18446744073709551616"...)
	}
	return strconv.AppendUint(append(dst, '-'), n+1, 10)
}

// appendJSONFloat writes f as encoding/json does.
func appendJSONFloat(dst []byte, f float64, bits int) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

func halfToFloat(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	mant := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * math.Ldexp(mant, -24)
	case 0x1f:
		if mant == 0 {
			return math.Inf(int(sign))
		}
		return math.NaN()
	}
	return sign * math.Ldexp(mant+1024, exp-25)
}

const hexDigits = "0123456789abcdef"

// appendJSONString writes b as a JSON string, as encoding/json writes a Go
// string: invalid UTF-8 becomes U+FFFD; it escapes what JSON requires, not
// HTML's characters.
func appendJSONString(dst, b []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(b); {
		c := b[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(append(dst, b[start:i]...), `\ufffd`...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		dst = append(dst, b[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, b[start:]...)
	return append(dst, '"')
}

// cborRefs returns the references of tag (TagObjectRef or TagActor) that
// the CBOR value data holds: none without one scan finding the tag's head,
// and none if the value does not walk.
func cborRefs(data []byte, tag uint64) []Ref {
	head := refHead
	if tag == TagActor {
		head = actorHead
	}
	if !bytes.Contains(data, head) {
		return nil
	}
	var out []Ref
	w := cborWalk{data: data}
	if tag == TagActor {
		w.actors = &out
	} else {
		w.refs = &out
	}
	if w.all() != nil {
		return nil
	}
	return out
}
