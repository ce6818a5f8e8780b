package wire

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestEncodeDecode(t *testing.T) {
	s, err := NewSigner(SchemeHMACSHA256, "secret")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMessage("execute_request", map[string]any{"code": "1+1"}, "sess")
	m.Identities = [][]byte{[]byte("id1")}
	m.Buffers = [][]byte{{0, 1, 2}}
	frames, err := s.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 1+6+1 || string(frames[1]) != Delimiter || len(frames[2]) != 64 {
		t.Fatalf("frames %q", frames)
	}
	if string(frames[3+1]) != "{}" {
		t.Errorf("empty parent header encodes as %s, want {}", frames[4])
	}
	got, err := s.Decode(frames)
	if err != nil {
		t.Fatal(err)
	}
	if got.Header != m.Header || got.Str("code") != "1+1" || !bytes.Equal(got.Identities[0], []byte("id1")) || !bytes.Equal(got.Buffers[0], []byte{0, 1, 2}) {
		t.Errorf("decoded %+v", got)
	}

	// Any change to a signed part must be rejected.
	for i := 3; i < 7; i++ {
		bad := append([][]byte(nil), frames...)
		bad[i] = append(append([]byte(nil), frames[i]...), ' ')
		if _, err := s.Decode(bad); !errors.Is(err, ErrBadSignature) {
			t.Errorf("tampered frame %d: %v", i, err)
		}
	}
	other, _ := NewSigner("", "other")
	if _, err := other.Decode(frames); !errors.Is(err, ErrBadSignature) {
		t.Errorf("wrong key: %v", err)
	}
}

// The signature must be the one Python's jupyter_client computes; this
// vector was produced with jupyter_client.session.Session(key=b"key").sign(...).
func TestSignMatchesPython(t *testing.T) {
	s, _ := NewSigner("hmac-sha256", "key")
	got := s.Sign([]byte(`{"a":1}`), []byte(`{}`), []byte(`{}`), []byte(`{}`))
	const want = "f1128388193e4dd1aa760827bd756a1b40b627676b5efe22c0e8297919bfa218"
	if got != want {
		t.Errorf("sign = %s, want %s", got, want)
	}
}

func TestEmptyKey(t *testing.T) {
	s, _ := NewSigner("", "")
	frames, err := s.Encode(NewMessage("kernel_info_request", nil, "s"))
	if err != nil {
		t.Fatal(err)
	}
	if len(frames[1]) != 0 {
		t.Errorf("empty key must give an empty signature, got %q", frames[1])
	}
	frames[1] = []byte("whatever")
	if _, err := s.Decode(frames); err != nil {
		t.Errorf("empty key accepts any signature like jupyter_client: %v", err)
	}
}

func TestUnknownScheme(t *testing.T) {
	if _, err := NewSigner("hmac-sha1", "k"); err == nil {
		t.Fatal("hmac-sha1 must be refused")
	}
}

func TestDecodeMalformed(t *testing.T) {
	s, _ := NewSigner("", "k")
	good, _ := s.Encode(NewMessage("status", nil, "s"))
	cases := map[string][][]byte{
		"nil":          nil,
		"no delimiter": {[]byte("a"), []byte("b")},
		"short":        good[:5],
		"bad json":     append(append([][]byte{}, good[:2]...), []byte("{"), good[3], good[4], good[5]),
	}
	for name, frames := range cases {
		if _, err := s.Decode(frames); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

// FuzzDecode checks that no input panics and that whatever decodes also
// re-encodes to frames that decode to the same message.
func FuzzDecode(f *testing.F) {
	s, _ := NewSigner("", "fuzzkey")
	good, _ := s.Encode(NewMessage("execute_request", map[string]any{"code": "1"}, "s"))
	f.Add(joinFrames(good))
	f.Add([]byte(Delimiter))
	// Without a key the signature check passes, so the fuzzer reaches the
	// JSON decoding behind it.
	open, _ := NewSigner("", "")
	f.Fuzz(func(t *testing.T, b []byte) {
		frames := splitFrames(b)
		_, _ = s.Decode(frames)
		m, err := open.Decode(frames)
		if err != nil {
			return
		}
		again, err := s.Encode(m)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		m2, err := s.Decode(again)
		if err != nil {
			t.Fatalf("decode of re-encoded message: %v", err)
		}
		if m2.Header != m.Header {
			t.Fatalf("header changed: %+v → %+v", m.Header, m2.Header)
		}
	})
}

// Frames are separated by a 0xff byte in the fuzz corpus so one []byte can
// carry a multipart message.
func joinFrames(fr [][]byte) []byte { return bytes.Join(fr, []byte{0xff}) }

func splitFrames(b []byte) [][]byte { return bytes.Split(b, []byte{0xff}) }

// TestFuzzSeedsPresent keeps the checked-in corpus from silently vanishing.
func TestFuzzSeedsPresent(t *testing.T) {
	for _, name := range []string{"FuzzDecode", "FuzzReadConnInfo"} {
		ents, err := os.ReadDir(filepath.Join("testdata", "fuzz", name))
		if err != nil || len(ents) == 0 {
			t.Errorf("no seed corpus for %s: %v", name, err)
		}
	}
}
