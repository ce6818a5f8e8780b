package kernelspec

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics, errors are one line, and whatever it accepts
// survives Marshal → Parse with the same typed fields.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"argv": ["/usr/bin/gopyk-kernel", "--kernel", "k", "--connection-file", "{connection_file}"], "display_name": "K", "language": "python", "interrupt_mode": "signal", "metadata": {"gopyk": {"ssh_host_alias": "h", "remote_kernel_name": "python3"}}}`))
	f.Add([]byte(`{"argv": [], "env": {"A": "b"}, "x": null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("/k/kernel.json", data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error: %q", err)
			}
			return
		}
		out, err := s.Marshal()
		if err != nil {
			// Only raw values encoding/json can read but not re-encode may fail.
			if !json.Valid(data) {
				t.Fatalf("accepted invalid JSON %q", data)
			}
			return
		}
		back, err := Parse("/k/kernel.json", out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		if !reflect.DeepEqual(back.Argv, nonNil(s.Argv)) || back.DisplayName != s.DisplayName ||
			back.InterruptMode != s.InterruptMode || !reflect.DeepEqual(back.Env, s.Env) ||
			!reflect.DeepEqual(back.Gopyk, s.Gopyk) {
			t.Fatalf("round trip changed the spec:\n in  %s\n out %s", data, out)
		}
	})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
