package abi

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The fuzz targets check, for arbitrary bytes, that a decoder
//   - never panics,
//   - fails only with an error wrapping ErrMalformed,
//   - and, when it succeeds, yields a message whose encoding decodes to an
//     equal message and re-encodes to the same bytes (round-trip
//     stability). The re-encoding is never longer than the input: decoders
//     accept non-minimal varints, the encoder writes minimal ones.
//
// The seed corpora live in testdata/fuzz/<FuzzName>/; f.Add adds the
// round-trip test cases of each type as well.

// msgPtr is a pointer to a message type M.
type msgPtr[M any] interface {
	*M
	message
}

func checkRoundTrip[M any, P msgPtr[M]](t *testing.T, data []byte) {
	in := append([]byte(nil), data...) // to check the decoder leaves its input alone
	var first M
	err := P(&first).Decode(data)
	if !bytes.Equal(in, data) {
		t.Fatalf("Decode modified its input")
	}
	if err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("Decode(%x) = %v; want an error wrapping ErrMalformed", data, err)
		}
		return
	}
	enc := P(&first).Encode(nil)
	if len(enc) > len(data) {
		t.Fatalf("re-encoding is longer than the input: %x from %x", enc, data)
	}
	var second M
	if err := P(&second).Decode(enc); err != nil {
		t.Fatalf("Decode(Encode(Decode(%x))) = %v; re-encoding %x", data, err, enc)
	}
	if !equalMsg(&first, &second) {
		t.Fatalf("round trip not stable for %x\n first  %+v\n second %+v", data, first, second)
	}
	if again := P(&second).Encode(nil); !bytes.Equal(again, enc) {
		t.Fatalf("encoding not stable: %x then %x", enc, again)
	}
}

func addSeeds[M any, P msgPtr[M]](f *testing.F) {
	for _, c := range roundTripCases() {
		if _, ok := c.msg.(P); ok {
			f.Add(c.msg.Encode(nil))
		}
	}
	f.Add([]byte{})
}

func FuzzInvocationDecode(f *testing.F) {
	addSeeds[Invocation](f)
	f.Fuzz(func(t *testing.T, data []byte) { checkRoundTrip[Invocation](t, data) })
}

func FuzzSubmitRequestDecode(f *testing.F) {
	addSeeds[SubmitRequest](f)
	f.Fuzz(func(t *testing.T, data []byte) { checkRoundTrip[SubmitRequest](t, data) })
}

func FuzzGetRequestDecode(f *testing.F) {
	addSeeds[GetRequest](f)
	f.Fuzz(func(t *testing.T, data []byte) { checkRoundTrip[GetRequest](t, data) })
}

func FuzzWaitRequestDecode(f *testing.F) {
	addSeeds[WaitRequest](f)
	f.Fuzz(func(t *testing.T, data []byte) { checkRoundTrip[WaitRequest](t, data) })
}

func FuzzPutRequestDecode(f *testing.F) {
	addSeeds[PutRequest](f)
	f.Fuzz(func(t *testing.T, data []byte) { checkRoundTrip[PutRequest](t, data) })
}

func FuzzPutDataRequestDecode(f *testing.F) {
	addSeeds[PutDataRequest](f)
	f.Fuzz(func(t *testing.T, data []byte) { checkRoundTrip[PutDataRequest](t, data) })
}

// Targets for the messages added with generators and cancellation; their
// seeds are the round-trip cases.

func FuzzCancelRequestDecode(f *testing.F) {
	addSeeds[CancelRequest](f)
	f.Fuzz(func(t *testing.T, data []byte) { checkRoundTrip[CancelRequest](t, data) })
}

func FuzzNextRequestDecode(f *testing.F) {
	addSeeds[NextRequest](f)
	f.Fuzz(func(t *testing.T, data []byte) { checkRoundTrip[NextRequest](t, data) })
}

// Targets for the actor requests a guest sends; their seeds are the
// round-trip cases and testdata/fuzz/<FuzzName>/.

func FuzzGetActorRequestDecode(f *testing.F) {
	addSeeds[GetActorRequest](f)
	f.Fuzz(func(t *testing.T, data []byte) { checkRoundTrip[GetActorRequest](t, data) })
}

func FuzzKillRequestDecode(f *testing.F) {
	addSeeds[KillRequest](f)
	f.Fuzz(func(t *testing.T, data []byte) { checkRoundTrip[KillRequest](t, data) })
}

// FuzzValueDecode: DecodeValue reads the payload of OpYield.
func FuzzValueDecode(f *testing.F) {
	addSeeds[loneValue](f)
	f.Fuzz(func(t *testing.T, data []byte) { checkRoundTrip[loneValue](t, data) })
}

// TestSeedCorpus keeps the checked-in seeds meaningful: files named valid-*
// must decode and invalid-* must not. (Files the fuzzer writes after a
// failure have hash names; `go test` replays them through the targets.)
func TestSeedCorpus(t *testing.T) {
	targets := map[string]func() message{
		"FuzzInvocationDecode":      func() message { return new(Invocation) },
		"FuzzSubmitRequestDecode":   func() message { return new(SubmitRequest) },
		"FuzzGetRequestDecode":      func() message { return new(GetRequest) },
		"FuzzWaitRequestDecode":     func() message { return new(WaitRequest) },
		"FuzzPutRequestDecode":      func() message { return new(PutRequest) },
		"FuzzNextRequestDecode":     func() message { return new(NextRequest) },
		"FuzzGetActorRequestDecode": func() message { return new(GetActorRequest) },
		"FuzzKillRequestDecode":     func() message { return new(KillRequest) },
	}
	for target, fresh := range targets {
		dir := filepath.Join("testdata", "fuzz", target)
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatalf("seed corpus of %s: %v", target, err)
		}
		var valid, invalid int
		for _, ent := range entries {
			name := ent.Name()
			isValid, isInvalid := strings.HasPrefix(name, "valid-"), strings.HasPrefix(name, "invalid-")
			if !isValid && !isInvalid {
				continue
			}
			t.Run(target+"/"+name, func(t *testing.T) {
				data := readCorpusFile(t, filepath.Join(dir, name))
				err := decodeSafely(t, fresh(), data)
				if isValid && err != nil {
					t.Fatalf("valid seed does not decode: %v", err)
				}
				if isInvalid && !errors.Is(err, ErrMalformed) {
					t.Fatalf("invalid seed: Decode = %v, want ErrMalformed", err)
				}
			})
			if isValid {
				valid++
			} else {
				invalid++
			}
		}
		if valid < 2 || invalid < 2 {
			t.Errorf("%s: %d valid and %d invalid seeds; want a few of each", target, valid, invalid)
		}
	}
}

// readCorpusFile reads a one-[]byte corpus file in the "go test fuzz v1"
// format.
func readCorpusFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) != 2 || lines[0] != "go test fuzz v1" ||
		!strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
		t.Fatalf("%s is not a one-[]byte corpus file", path)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(s)
}
