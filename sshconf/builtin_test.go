package sshconf

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestBuiltinSplitKeyword(t *testing.T) {
	for _, tc := range []struct{ in, kw, rest string }{
		{"  Port 22", "Port", "22"},
		{"Port=22", "Port", "22"},
		{"Port = 22 ", "Port", "22"},
		{"\tHostName\t\"a b\"", "HostName", "\"a b\""},
		{"# comment", "", ""},
		{"   ", "", ""},
		{"Port==22", "Port", "=22"},
		{"ProxyCommand  = nc %h %p  ", "ProxyCommand", "nc %h %p"},
	} {
		kw, rest := splitKeyword(tc.in)
		if kw != tc.kw || rest != tc.rest {
			t.Errorf("splitKeyword(%q) = %q, %q; want %q, %q", tc.in, kw, rest, tc.kw, tc.rest)
		}
	}
}

func TestBuiltinArgvSplit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"a b\tc", []string{"a", "b", "c"}},
		{`"a b" 'c d'`, []string{"a b", "c d"}},
		{`a\ b x\"y`, []string{"a b", `x"y`}},
		{`"a\"b"`, []string{`a"b`}},
		{"a # comment", []string{"a"}},
		{"a#b", []string{"a#b"}},
		{`"" x`, []string{"", "x"}},
	} {
		got, err := argvSplit(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("argvSplit(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := argvSplit(`"open`); err == nil {
		t.Error("unclosed quote accepted")
	}
}

func TestBuiltinMatchPattern(t *testing.T) {
	for _, tc := range []struct {
		s, p string
		want bool
	}{
		{"web1", "web?", true}, {"web", "web?", false}, {"web12", "web?", false},
		{"a.b.c", "*.c", true}, {"abc", "a*b*c", true}, {"ac", "a?c", false},
		{"", "*", true}, {"x", "", false}, {"Web", "web", false},
	} {
		if got := matchPattern(tc.s, tc.p); got != tc.want {
			t.Errorf("matchPattern(%q, %q) = %v", tc.s, tc.p, got)
		}
	}
	if matchPatternList("Host.Example", "*.example", true) != 1 || matchPatternList("a", "*,!a", false) != -1 ||
		matchPatternList("b", "a,c", false) != 0 {
		t.Error("matchPatternList")
	}
}

// builtinFor resolves alias with the built-in backend over files laid out
// under a temp home (name → content; "config" is -F).
func builtinFor(t *testing.T, files map[string]string, alias string) (Route, error) {
	t.Helper()
	home := t.TempDir()
	for name, content := range files {
		writeFile(t, filepath.Join(home, name), strings.ReplaceAll(content, "@HOME@", home))
	}
	local := fixtureLocal(t, home)
	t.Setenv("HOME", home)
	b := &builtinBackend{configFile: filepath.Join(home, "config"), systemFile: filepath.Join(home, "nosystem"), local: local}
	return (&resolver{be: b, local: local}).resolve(context.Background(), alias)
}

func TestBuiltinLoudErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"match user in a block that does not apply", map[string]string{"config": "Host other\n  Port 1\nMatch user bob\n  Port 2\n"},
			[]string{"config:3: Match user is not supported", builtinFix}},
		{"negated criterion", map[string]string{"config": "Match !exec \"false\"\n"},
			[]string{"config:1: Match exec is not supported"}},
		{"canonical", map[string]string{"config": "Match canonical all\n"},
			[]string{"Match canonical is not supported"}},
		{"tagged in an include", map[string]string{
			"config": "Host x\n  Include ~/.ssh/x.conf\n", ".ssh/x.conf": "\n\nMatch tagged t\n"},
			[]string{".ssh/x.conf:3: Match tagged is not supported"}},
		{"canonicalize", map[string]string{"config": "Host x\n  CanonicalizeHostname yes\nCanonicalDomains example.org\n"},
			[]string{"config:2:", "CanonicalizeHostname yes is not supported", builtinFix}},
		{"misspelt keyword", map[string]string{"config": "Host other\n  IdentitiyFile ~/.ssh/k\n"},
			[]string{"config:2: Bad configuration option: identitiyfile"}},
		{"unknown Match attribute", map[string]string{"config": "Host other\nMatch hots x\n"},
			[]string{"config:2: Unsupported Match attribute hots"}},
		{"garbage", map[string]string{"config": "Host x\n  Port 22 23\n"},
			[]string{"config:2: port: garbage at end of line"}},
		{"bad port", map[string]string{"config": "Port none-such-service\n"},
			[]string{"config:1: bad port"}},
		{"bad quotes", map[string]string{"config": "User \"bob\n"},
			[]string{"config:1: invalid quotes"}},
		{"include loop", map[string]string{"config": "Include @HOME@/config\n"},
			[]string{"Include nested deeper than 16"}},
		{"device", map[string]string{"config": "Include /dev/zero\n"},
			[]string{"/dev/zero is not a regular file"}},
		{"bad jump", map[string]string{"config": "ProxyJump a,,b\n"},
			[]string{"config:1: ProxyJump \"a,,b\": empty hop"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := builtinFor(t, tc.files, "x")
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

// What the built-in reader cannot evaluate fails only the hosts that need
// it, as ssh evaluates it: the other hosts resolve.
func TestBuiltinUnsupportedOnlyWhereReached(t *testing.T) {
	for _, tc := range []struct {
		name, config string
		fails        string // the host that needs what the reader cannot do, or ""
	}{
		{"Match exec after a failed criterion", "Match host other exec \"false\"\n  Port 2\n", "other"},
		{"Match exec before a failing criterion", "Match exec \"false\" originalhost other\n  Port 2\n", "other"},
		{"Match final in another host's block", "Host other\n  Include ~/.ssh/f.conf\n", "other"},
		{"CanonicalizeHostname in another host's block", "Host other\n  CanonicalizeHostname always\nCanonicalDomains example.org\n", "other"},
		{"CanonicalizeHostname yes through a ProxyJump", "Host x\n  CanonicalizeHostname yes\n  CanonicalDomains example.org\n  ProxyJump j\n", ""},
		{"CanonicalizeHostname without domains", "CanonicalizeHostname yes\n", ""},
		{"CanonicalizeHostname set to no first", "Host x\n  CanonicalizeHostname no\nHost *\n  CanonicalizeHostname always\n  CanonicalDomains example.org\n", "other"},
		{"IgnoreUnknown", "IgnoreUnknown UseKeychain,Foo*\nHost *\n  UseKeychain yes\n  FooBar 1\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"config": tc.config, ".ssh/f.conf": "Match final\n  Port 3\n"}
			route, err := builtinFor(t, files, "x")
			if err != nil {
				t.Fatal(err)
			}
			if p := route.Target().Port; p != 22 {
				t.Fatalf("port %d, want 22", p)
			}
			if tc.fails != "" {
				if _, err := builtinFor(t, files, tc.fails); err == nil || !strings.Contains(err.Error(), builtinFix) {
					t.Fatalf("host %s: err %v, want the loud error", tc.fails, err)
				}
			}
		})
	}
}

func TestBuiltinPermissions(t *testing.T) {
	home := t.TempDir()
	writeFile(t, filepath.Join(home, ".ssh/config"), "Port 2\n")
	if err := os.Chmod(filepath.Join(home, ".ssh/config"), 0o666); err != nil {
		t.Fatal(err)
	}
	local := fixtureLocal(t, home)
	b := &builtinBackend{systemFile: filepath.Join(home, "nosystem"), local: local}
	_, err := (&resolver{be: b, local: local}).resolve(context.Background(), "x")
	if err == nil || !strings.Contains(err.Error(), "bad owner or permissions on "+home+"/.ssh/config") {
		t.Fatalf("err = %v", err)
	}
}

func TestBuiltinSystemFileAfterUserFile(t *testing.T) {
	home := t.TempDir()
	writeFile(t, filepath.Join(home, ".ssh/config"), "Host x\n  Port 2\n")
	writeFile(t, filepath.Join(home, "system"), "Include sys.d/*.conf\nHost *\n  Port 3\n  User sys\n")
	local := fixtureLocal(t, home)
	b := &builtinBackend{systemFile: filepath.Join(home, "system"), local: local}
	route, err := (&resolver{be: b, local: local}).resolve(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if s := route.Target(); s.Port != 2 || s.User != "sys" {
		t.Fatalf("port %d user %q: want the user file's port and the system file's user", s.Port, s.User)
	}
}

// FuzzBuiltinConfig feeds arbitrary config text to the built-in reader: it
// may refuse it, but must never panic (kevinburke/ssh_config re-panics its
// runtime errors) nor hang.
func FuzzBuiltinConfig(f *testing.F) {
	for _, s := range []string{
		"Host x\n  Port 2\n", "Match host x\n User u\n", "Host *\n\tHostName %h.ex\nInclude none\n",
		"Port=\"22\"\nProxyJump a,b\nIdentityFile ~/.ssh/%r\n", "Host \"a b\" !c\n  User 'q'\n",
	} {
		f.Add(s, "x")
	}
	home := f.TempDir()
	f.Fuzz(func(t *testing.T, cfg, alias string) {
		if checkHost(alias) != nil {
			return
		}
		path := filepath.Join(home, "config")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		local := localEnv{home: home, user: "me", uid: "1000", hostname: "box",
			lookupEnv: func(string) (string, bool) { return "", false }}
		b := &builtinBackend{configFile: path, systemFile: filepath.Join(home, "nosystem"), local: local}
		_, _ = (&resolver{be: b, local: local}).resolve(context.Background(), alias)
	})
}

// "none" known-hosts files stay visible as "none" (Dial reads an empty
// list as "use the defaults"); "IdentityFile none" is no file at all.
func TestBuiltinNoneValues(t *testing.T) {
	route, err := builtinFor(t, map[string]string{"config": "UserKnownHostsFile none\nGlobalKnownHostsFile none\nIdentityFile none\n"}, "x")
	if err != nil {
		t.Fatal(err)
	}
	s := route.Target()
	if !reflect.DeepEqual(s.UserKnownHostsFiles, []string{"none"}) || !reflect.DeepEqual(s.GlobalKnownHostsFiles, []string{"none"}) ||
		len(s.IdentityFiles) != 0 {
		t.Fatalf("user %q global %q identities %q", s.UserKnownHostsFiles, s.GlobalKnownHostsFiles, s.IdentityFiles)
	}
}
