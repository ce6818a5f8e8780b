package sshconf

import "testing"

func TestStripDomain(t *testing.T) {
	for _, tc := range []struct{ name, goos, want string }{
		{`VM\root`, "windows", "root"},
		{`CORP\jane.doe`, "windows", "jane.doe"},
		{"jane", "windows", "jane"},
		{`a\b`, "linux", `a\b`}, // a backslash is just a character there
	} {
		if got := stripDomain(tc.name, tc.goos); got != tc.want {
			t.Errorf("stripDomain(%q, %s) = %q, want %q", tc.name, tc.goos, got, tc.want)
		}
	}
}
