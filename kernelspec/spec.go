package kernelspec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
)

// FileName is the spec file inside a kernel's resource directory.
const FileName = "kernel.json"

// Spec is one kernel.json and the directory holding it. Only the fields
// Jupyter defines are typed; every other key (top level, under metadata and
// under metadata.gopyk) is kept as it was read and written back unchanged.
type Spec struct {
	Name string // the name Jupyter knows it by: the directory name, lower-cased
	Dir  string // the resource directory

	Argv          []string
	DisplayName   string
	Language      string
	InterruptMode string            // "signal", "message" or "" (Jupyter's default: signal)
	Env           map[string]string // nil: no "env" key
	Metadata      map[string]json.RawMessage
	Gopyk         *Gopyk // metadata.gopyk; nil when gopyk did not write this spec

	raw      map[string]json.RawMessage // every top-level key as read
	gopykRaw map[string]json.RawMessage // every metadata.gopyk key as read
}

// File is the path of the spec's kernel.json.
func (s *Spec) File() string { return pjoin(s.Dir, FileName) }

var namePattern = regexp.MustCompile(`(?i)^[a-z0-9._\-]+$`)

// ValidName applies jupyter_client's _is_valid_kernel_name.
func ValidName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("invalid kernel name %q: use only ASCII letters, digits, '-', '.' and '_'", name)
	}
	return nil
}

// Parse decodes the kernel.json read from path. Errors are one line and name
// the file and the key, e.g. `kernel.json at /x: "argv" must be a list of strings`.
func Parse(path string, data []byte) (*Spec, error) {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("kernel.json at %s: %s", path, fmt.Sprintf(format, a...))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			line, col := position(data, se.Offset-1) // Offset is just past the bad byte
			return nil, fail("invalid JSON at line %d, column %d: %v", line, col, se)
		case errors.As(err, &te), bytes.Equal(bytes.TrimSpace(data), []byte("null")):
			return nil, fail("must hold a JSON object")
		}
		return nil, fail("invalid JSON: %v", err)
	}
	if raw == nil {
		return nil, fail("must hold a JSON object")
	}
	s := &Spec{raw: raw}
	fields := []struct {
		key  string
		dst  any
		what string
	}{
		{"argv", &s.Argv, "a list of strings"},
		{"display_name", &s.DisplayName, "a string"},
		{"language", &s.Language, "a string"},
		{"interrupt_mode", &s.InterruptMode, `"signal" or "message"`},
		{"env", &s.Env, "an object whose values are strings"},
		{"metadata", &s.Metadata, "an object"},
	}
	for _, f := range fields {
		v, ok := raw[f.key]
		if !ok {
			continue
		}
		if isNull(v) || json.Unmarshal(v, f.dst) != nil {
			return nil, fail("%q must be %s", f.key, f.what)
		}
	}
	switch strings.ToLower(s.InterruptMode) {
	case "", "signal", "message":
		// Jupyter's CaselessStrEnum accepts any case and uses the canonical one.
		s.InterruptMode = strings.ToLower(s.InterruptMode)
	default:
		return nil, fail(`"interrupt_mode" must be "signal" or "message", not %q`, s.InterruptMode)
	}
	if g, ok := s.Metadata[MetadataKey]; ok {
		if isNull(g) || json.Unmarshal(g, &s.gopykRaw) != nil {
			return nil, fail(`"metadata.%s" must be an object`, MetadataKey)
		}
		s.Gopyk = new(Gopyk)
		if err := json.Unmarshal(g, s.Gopyk); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return nil, fail("%q must be %s", "metadata."+MetadataKey+"."+te.Field, describe(te.Type))
			}
			return nil, fail("metadata.%s: %v", MetadataKey, err)
		}
	}
	return s, nil
}

// Marshal encodes the spec as kernel.json: the typed fields over the keys
// that were read, so nothing gopyk does not know about is lost.
func (s *Spec) Marshal() ([]byte, error) {
	out := make(map[string]any, len(s.raw)+6)
	for k, v := range s.raw {
		out[k] = v
	}
	argv := s.Argv
	if argv == nil {
		argv = []string{}
	}
	out["argv"] = argv
	out["display_name"] = s.DisplayName
	out["language"] = s.Language
	setOrDelete(out, "interrupt_mode", s.InterruptMode, s.InterruptMode != "")
	setOrDelete(out, "env", s.Env, s.Env != nil)

	meta := s.Metadata
	if s.Gopyk != nil {
		g, err := s.marshalGopyk()
		if err != nil {
			return nil, err
		}
		meta = make(map[string]json.RawMessage, len(s.Metadata)+1)
		for k, v := range s.Metadata {
			meta[k] = v
		}
		meta[MetadataKey] = g
	}
	setOrDelete(out, "metadata", meta, meta != nil)

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ") // the indent Jupyter's own installers use
	if err := enc.Encode(out); err != nil {
		return nil, fmt.Errorf("encode kernel.json for %s: %w", s.Dir, err)
	}
	return buf.Bytes(), nil
}

func (s *Spec) marshalGopyk() (json.RawMessage, error) {
	typed, err := marshalPlain(s.Gopyk)
	if err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(typed, &fields); err != nil {
		return nil, err
	}
	merged := make(map[string]json.RawMessage, len(s.gopykRaw)+len(fields))
	for k, v := range s.gopykRaw {
		merged[k] = v
	}
	// A known field left empty (omitempty) was unset on purpose: drop the old value.
	for _, k := range gopykKeys() {
		delete(merged, k)
	}
	for k, v := range fields {
		merged[k] = v
	}
	return marshalPlain(merged)
}

// marshalPlain is json.Marshal without HTML escaping: the encoder keeps raw
// values as they are, so "&&" in remote_pre would stay "\u0026\u0026" otherwise.
func marshalPlain(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

func gopykKeys() []string {
	t := reflect.TypeOf(Gopyk{})
	keys := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}

func setOrDelete(m map[string]any, key string, v any, set bool) {
	if set {
		m[key] = v
	} else {
		delete(m, key)
	}
}

func isNull(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }

func describe(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a " + t.String()
}

func position(data []byte, offset int64) (line, col int) {
	offset = max(0, min(offset, int64(len(data))))
	before := data[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(offset) - bytes.LastIndexByte(before, '\n')
	return line, col
}
