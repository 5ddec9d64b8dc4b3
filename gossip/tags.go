package gossip

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// Tag keys. Every member's tags ride in every alive message and must fit
// in 512 bytes, so the keys are short.
const (
	tagAPI       = "api" // APIAddr
	tagResources = "r"   // Resources, "CPU=8,GPU=1,disk=2"
)

// maxTagsSize is memberlist.MetaMaxSize: the most node metadata a member
// may carry.
const maxTagsSize = 512

// tagMagicByte is the prefix byte Serf puts before its msgpack-encoded tags.
const tagMagicByte = 0xff

// makeTags returns the tags for apiAddr and resources, or ErrTagsTooLarge.
func makeTags(apiAddr string, resources map[string]float64) (map[string]string, error) {
	tags := map[string]string{tagAPI: apiAddr, tagResources: encodeResources(resources)}
	if n := encodedTagsSize(tags); n > maxTagsSize {
		return nil, fmt.Errorf("%w: %d bytes (API address %d bytes, %d resources)", ErrTagsTooLarge, n, len(apiAddr), len(resources))
	}
	return tags, nil
}

// encodedTagsSize returns the size of tags as Serf encodes them (its
// encodeTags: the magic byte, then msgpack), so that the limit is checked
// here with a clear error instead of failing inside Serf.
func encodedTagsSize(tags map[string]string) int {
	var buf bytes.Buffer
	buf.WriteByte(tagMagicByte)
	if err := codec.NewEncoder(&buf, &codec.MsgpackHandle{}).Encode(tags); err != nil {
		return math.MaxInt // a map of strings always encodes; be safe anyway
	}
	return buf.Len()
}

// encodeResources encodes resources compactly, sorted by name so that the
// same resources always give the same tag (and no spurious update).
func encodeResources(res map[string]float64) string {
	var b strings.Builder
	for i, name := range slices.Sorted(maps.Keys(res)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(strconv.FormatFloat(res[name], 'g', -1, 64))
	}
	return b.String()
}

// decodeResources decodes a peer's resources tag. A peer may run another
// version or be broken: entries that do not parse, or amounts that are not
// finite and >= 0, are skipped rather than failing the whole member.
func decodeResources(s string) map[string]float64 {
	res := make(map[string]float64)
	for entry := range strings.SplitSeq(s, ",") {
		name, amount, ok := strings.Cut(entry, "=")
		if !ok || name == "" {
			continue
		}
		v, err := strconv.ParseFloat(amount, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			continue
		}
		res[name] = v
	}
	return res
}
