package sshconf

import (
	"strings"
	"testing"
)

func testTokens() Tokens {
	return Tokens{Alias: "Web", HostName: "web.example", Port: 2222, User: "bob", LocalUser: "me",
		Home: "/home/me", UID: "1000", HostKeyAlias: "Web", LocalHost: "box.lan", JumpHost: "gw"}
}

func TestExpandTokens(t *testing.T) {
	tk := testTokens()
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"~/.ssh/id_%r@%h:%p", "~/.ssh/id_bob@web.example:2222"},
		{"%n %k %u %d %i %L %l %j %%", "Web Web me /home/me 1000 box box.lan gw %"},
		{"%%h", "%h"},
		{"%C", tk.connHash()},
		{"${HOME}", "${HOME}"}, // ExpandTokens leaves ${VAR} alone
	} {
		got, err := ExpandTokens(tc.in, tk)
		if err != nil || got != tc.want {
			t.Errorf("ExpandTokens(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"%", "abc%", "%x", "%T"} {
		if got, err := ExpandTokens(bad, tk); err == nil {
			t.Errorf("ExpandTokens(%q) = %q, want an error", bad, got)
		}
	}
}

// %C must be OpenSSH 9.2's sha1(%l%h%p%r), checked against a value ssh printed.
func TestConnHashMatchesOpenSSH(t *testing.T) {
	tk := Tokens{LocalHost: "vm", HostName: "foox.example.com", Port: 22, User: "root"}
	if got, want := tk.connHash(), "135c82baa9a9a0df1fd5c08e3825b25b06064140"; got != want {
		t.Fatalf("%%C = %s, want %s", got, want)
	}
}

func TestProxyCommandTokens(t *testing.T) {
	tk := testTokens()
	got, err := expand("nc %h %p # %r %n %k %%", tk, proxyCommandTokens, false, nil)
	if err != nil || got != "nc web.example 2222 # bob Web Web %" {
		t.Fatalf("got %q, %v", got, err)
	}
	// ssh refuses the other tokens in a ProxyCommand, and leaves ${VAR} to the shell.
	if _, err := expand("nc %d", tk, proxyCommandTokens, false, nil); err == nil {
		t.Fatal("token d accepted in ProxyCommand")
	}
	if got, _ := expand("nc ${X} %h", tk, proxyCommandTokens, false, nil); got != "nc ${X} web.example" {
		t.Fatalf("got %q", got)
	}
}

func TestExpandPath(t *testing.T) {
	l := testLocal()
	l.lookupEnv = func(k string) (string, bool) {
		if k == "KEYS" {
			return "/keys", true
		}
		return "", false
	}
	tk := testTokens()
	for _, tc := range []struct{ in, want string }{
		{"~", "/home/me"},
		{"~/.ssh/id_%h", "/home/me/.ssh/id_web.example"},
		{"${KEYS}/%r", "/keys/bob"},
		{"/abs/~/x", "/abs/~/x"},
		{"~root/x", "/root/x"},
		{"$KEYS", "$KEYS"},
	} {
		got, err := l.expandPath(tc.in, tk)
		if err != nil || got != tc.want {
			t.Errorf("expandPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"${UNSET_VAR}/x", "${KEYS", "${1X}", "~no-such-user-gopyk/x"} {
		if got, err := l.expandPath(bad, tk); err == nil {
			t.Errorf("expandPath(%q) = %q, want an error", bad, got)
		} else if strings.Contains(err.Error(), "%!") {
			t.Errorf("bad format in %v", err)
		}
	}
}
