package wire

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"time"
)

// Delimiter separates routing identities from the signed message parts.
const Delimiter = "<IDS|MSG>"

// ProtocolVersion is the messaging protocol version gopyk writes in headers
// (what ipykernel 6 answers with).
const ProtocolVersion = "5.3"

// Header is a Jupyter message header. Empty fields are omitted so an empty
// parent header encodes as {} like Jupyter's own.
type Header struct {
	MsgID    string `json:"msg_id,omitempty"`
	Session  string `json:"session,omitempty"`
	Username string `json:"username,omitempty"`
	Date     string `json:"date,omitempty"`
	MsgType  string `json:"msg_type,omitempty"`
	Version  string `json:"version,omitempty"`
}

// Message is one Jupyter message. Channel is filled in by the Client on
// receipt (it is not part of the wire format).
type Message struct {
	Identities   [][]byte
	Header       Header
	ParentHeader Header
	Metadata     map[string]any
	Content      map[string]any
	Buffers      [][]byte
	Channel      string
}

// NewMessage builds a request with a fresh msg_id. content may be a
// map[string]any, nil (→ {}), or anything that encodes to a JSON object.
func NewMessage(msgType string, content any, session string) *Message {
	m := &Message{
		Header: Header{
			MsgID:    NewID(),
			Session:  session,
			Username: "gopyk",
			Date:     time.Now().UTC().Format("2006-01-02T15:04:05.000000Z07:00"),
			MsgType:  msgType,
			Version:  ProtocolVersion,
		},
		Metadata: map[string]any{},
	}
	switch c := content.(type) {
	case nil:
		m.Content = map[string]any{}
	case map[string]any:
		m.Content = c
	default:
		// Round-trip through JSON so callers may pass structs; a value that
		// is not an object becomes an empty content and fails loudly on the
		// kernel side rather than here, keeping NewMessage infallible.
		b, err := json.Marshal(c)
		if err == nil {
			_ = json.Unmarshal(b, &m.Content)
		}
		if m.Content == nil {
			m.Content = map[string]any{}
		}
	}
	return m
}

// NewID returns a random UUID4 string, the form Jupyter uses for ids.
func NewID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:])
}

// Str returns a string field of the content, "" when absent or not a string.
func (m *Message) Str(key string) string {
	s, _ := m.Content[key].(string)
	return s
}

// Signer signs and verifies messages for one key and scheme.
type Signer struct {
	key []byte
}

// NewSigner accepts hmac-sha256 (or "" meaning it) and refuses every other
// scheme, so a kernel asking for one can't be silently unauthenticated.
func NewSigner(scheme, key string) (*Signer, error) {
	if scheme != "" && scheme != SchemeHMACSHA256 {
		return nil, fmt.Errorf("unsupported signature_scheme %q (gopyk supports %s only)", scheme, SchemeHMACSHA256)
	}
	return &Signer{key: []byte(key)}, nil
}

// Signer returns the signer described by the connection info.
func (ci ConnInfo) Signer() (*Signer, error) {
	return NewSigner(ci.SignatureScheme, ci.Key)
}

func (s *Signer) mac(parts [][]byte) []byte {
	var h hash.Hash = hmac.New(sha256.New, s.key)
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// Sign returns the hex signature of header‖parent‖metadata‖content; empty
// when the key is empty (Jupyter's "no authentication").
func (s *Signer) Sign(parts ...[]byte) string {
	if len(s.key) == 0 {
		return ""
	}
	return hex.EncodeToString(s.mac(parts))
}

func objectJSON(v any) ([]byte, error) {
	if m, ok := v.(map[string]any); ok && m == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(v)
}

// Encode returns the wire frames: identities, delimiter, signature, the four
// JSON parts and the buffers.
func (s *Signer) Encode(m *Message) ([][]byte, error) {
	var parts [4][]byte
	var err error
	vals := [4]any{m.Header, m.ParentHeader, m.Metadata, m.Content}
	for i, v := range vals {
		if parts[i], err = objectJSON(v); err != nil {
			return nil, fmt.Errorf("encode %s message: %w", m.Header.MsgType, err)
		}
	}
	frames := make([][]byte, 0, len(m.Identities)+6+len(m.Buffers))
	frames = append(frames, m.Identities...)
	frames = append(frames, []byte(Delimiter), []byte(s.Sign(parts[:]...)))
	frames = append(frames, parts[:]...)
	frames = append(frames, m.Buffers...)
	return frames, nil
}

// Errors from Decode, for errors.Is.
var (
	ErrNoDelimiter  = errors.New("no <IDS|MSG> delimiter")
	ErrShortMessage = errors.New("fewer than 5 frames after <IDS|MSG>")
	ErrBadSignature = errors.New("signature does not match (wrong key?)")
)

// Decode parses and verifies wire frames. It never panics on malformed
// input: anything short, unsigned or not JSON is an error.
func (s *Signer) Decode(frames [][]byte) (*Message, error) {
	d := -1
	for i, f := range frames {
		if bytes.Equal(f, []byte(Delimiter)) {
			d = i
			break
		}
	}
	if d < 0 {
		return nil, ErrNoDelimiter
	}
	if len(frames)-d < 6 {
		return nil, ErrShortMessage
	}
	sig, parts := frames[d+1], frames[d+2:d+6]
	if len(s.key) > 0 {
		got := make([]byte, hex.DecodedLen(len(sig)))
		n, err := hex.Decode(got, sig)
		if err != nil || !hmac.Equal(got[:n], s.mac(parts)) {
			return nil, ErrBadSignature
		}
	}
	m := &Message{Identities: frames[:d:d]}
	targets := [4]any{&m.Header, &m.ParentHeader, &m.Metadata, &m.Content}
	names := [4]string{"header", "parent_header", "metadata", "content"}
	for i, p := range parts {
		if err := json.Unmarshal(p, targets[i]); err != nil {
			return nil, fmt.Errorf("decode %s: %w", names[i], err)
		}
	}
	if m.Header.MsgType == "" {
		return nil, errors.New("decode header: no msg_type")
	}
	if rest := frames[d+6:]; len(rest) > 0 {
		m.Buffers = rest
	}
	return m, nil
}
