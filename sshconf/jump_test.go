package sshconf

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseJump(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Jump
	}{
		{"", nil},
		{"none", nil},
		{"NONE", nil},
		{"host", []Jump{{Host: "host"}}},
		{"user@host", []Jump{{User: "user", Host: "host"}}},
		{"user@host:2200", []Jump{{User: "user", Host: "host", Port: 2200}}},
		{"a,b:2,c@d", []Jump{{Host: "a"}, {Host: "b", Port: 2}, {User: "c", Host: "d"}}},
		{"a, b", []Jump{{Host: "a"}, {Host: "b"}}},
		{"ssh://u@h:22", []Jump{{User: "u", Host: "h", Port: 22}}},
		{"ssh://h/", []Jump{{Host: "h"}}},
		{"SSH://h", []Jump{{Host: "h"}}},
		{"[::1]:2222", []Jump{{Host: "::1", Port: 2222}}},
		{"u@[fe80::1]", []Jump{{User: "u", Host: "fe80::1"}}},
		{"fe80::1", []Jump{{Host: "fe80::1"}}},
		{"first@second@h", []Jump{{User: "first@second", Host: "h"}}},
		{"10.0.0.1:22,ssh://u@[::1]:5", []Jump{{Host: "10.0.0.1", Port: 22}, {User: "u", Host: "::1", Port: 5}}},
	} {
		got, err := ParseJump(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseJump(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseJumpErrors(t *testing.T) {
	for _, in := range []string{
		"a,,b", "a,", "@h", "h:0", "h:65536", "h:x", "h:", "[::1", "[::1]x", "[]:22",
		"-oProxyCommand=evil", "ssh://h/path", "ssh://h?x", "h'q", "u@", "a b",
	} {
		if js, err := ParseJump(in); err == nil {
			t.Errorf("ParseJump(%q) = %+v, want an error", in, js)
		} else if !strings.Contains(err.Error(), "ProxyJump") {
			t.Errorf("ParseJump(%q) error %q does not name ProxyJump", in, err)
		}
	}
}

func TestJumpString(t *testing.T) {
	js := []Jump{{User: "u", Host: "h", Port: 2}, {Host: "::1", Port: 22}, {Host: "fe80::1"}, {Host: "plain"}}
	if got, want := joinJumps(js), "u@h:2,[::1]:22,[fe80::1],plain"; got != want {
		t.Fatalf("joinJumps = %q, want %q", got, want)
	}
	back, err := ParseJump(joinJumps(js))
	if err != nil || !reflect.DeepEqual(back, js) {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
}

func FuzzParseJump(f *testing.F) {
	for _, s := range []string{"u@h:22", "a,b,c", "ssh://u@[::1]:2222", "none", "[fe80::1%eth0]:22", "a@b@c:1,d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		js, err := ParseJump(spec)
		if err != nil {
			return
		}
		for _, j := range js {
			if j.Host == "" || j.Port < 0 || j.Port > 65535 || strings.HasPrefix(j.Host, "-") {
				t.Fatalf("ParseJump(%q) gave a bad hop %+v", spec, j)
			}
		}
		// What ParseJump accepts, Jump.String writes back unchanged.
		back, err := ParseJump(joinJumps(js))
		if err != nil || !reflect.DeepEqual(back, js) {
			t.Fatalf("ParseJump(%q) = %+v; reparsed %q = %+v, %v", spec, js, joinJumps(js), back, err)
		}
	})
}
