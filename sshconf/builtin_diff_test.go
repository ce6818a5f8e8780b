package sshconf

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestBuiltinMatchesOpenSSH is the differential test: for every fixture in
// testdata/resolve the built-in backend must produce the same route and
// settings as the real `ssh -G`, or, where the fixture says so, refuse
// loudly while ssh -G copes.
//
// A fixture is a txtar archive. Its files are written under a temporary home
// directory (@HOME@ in them is replaced by its path); "config" is passed as
// -F unless the comment has "no-F", in which case it becomes ~/.ssh/config
// and ssh also reads /etc/ssh/ssh_config. Comment lines:
//
//	hosts: a b c            aliases to resolve with both backends
//	builtin-error: text     the built-in backend must fail with text
//	ssh-error: text         ssh -G fails with text, and the built-in backend with the same
//	error-hosts: a b        the hosts those errors are for (default: all); the others must agree
//	env: NAME=value         set for both backends
//
// ssh takes the home directory from the passwd entry, not $HOME, so ssh runs
// under nss_wrapper with a passwd file pointing our uid at the temp home.
func TestBuiltinMatchesOpenSSH(t *testing.T) {
	sshPath, err := exec.LookPath("ssh")
	if err != nil {
		t.Fatalf("the differential test needs OpenSSH's ssh on PATH (apt-get install openssh-client): %v", err)
	}
	nss := findNSSWrapper(t)
	fixtures, err := filepath.Glob("testdata/resolve/*.txtar")
	if err != nil || len(fixtures) == 0 {
		t.Fatalf("no fixtures in testdata/resolve: %v", err)
	}
	for _, fx := range fixtures {
		t.Run(strings.TrimSuffix(filepath.Base(fx), ".txtar"), func(t *testing.T) {
			runFixture(t, fx, sshPath, nss)
		})
	}
}

func runFixture(t *testing.T, fx, sshPath, nss string) {
	data, err := os.ReadFile(fx)
	if err != nil {
		t.Fatal(err)
	}
	ar := parseTxtar(data)
	home := t.TempDir()
	// ssh reads Include's ~ from $HOME (glob(3)), the rest from passwd.
	t.Setenv("HOME", home)
	var hosts []string
	var wantErr, sshErr string
	var errHosts []string
	noF := false
	for _, l := range strings.Split(string(ar.Comment), "\n") {
		k, v, _ := strings.Cut(l, ":")
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "hosts":
			hosts = strings.Fields(v)
		case "builtin-error":
			wantErr = v
		case "ssh-error":
			sshErr = v
		case "error-hosts":
			errHosts = strings.Fields(v)
		case "no-F":
			noF = true
		case "env":
			name, val, _ := strings.Cut(v, "=")
			t.Setenv(name, strings.ReplaceAll(val, "@HOME@", home))
		}
	}
	if len(hosts) == 0 {
		t.Fatal("fixture names no hosts")
	}
	for _, f := range ar.Files {
		name := f.Name
		if name == "config" && noF {
			name = ".ssh/config"
		}
		writeFile(t, filepath.Join(home, name), strings.ReplaceAll(string(f.Data), "@HOME@", home))
	}
	cfg := ""
	if !noF {
		cfg = filepath.Join(home, "config")
	}
	local := fixtureLocal(t, home)
	ossh := &resolver{be: opensshBackend{ssh: sshPath, configFile: cfg, env: nssEnv(t, nss, local)}, local: local}
	bi := &resolver{be: newBuiltin(cfg, local), local: local}
	ctx := context.Background()
	for _, h := range hosts {
		errHost := len(errHosts) == 0 || slices.Contains(errHosts, h)
		want, err := ossh.resolve(ctx, h)
		if sshErr != "" && errHost {
			if err == nil || !strings.Contains(err.Error(), sshErr) {
				t.Fatalf("ssh -G %s: err = %v, want %q", h, err, sshErr)
			}
			if _, err := bi.resolve(ctx, h); err == nil || !strings.Contains(err.Error(), sshErr) {
				t.Fatalf("builtin %s: err = %v, want %q as ssh says", h, err, sshErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("ssh -G %s: %v", h, err)
		}
		got, err := bi.resolve(ctx, h)
		if wantErr != "" && errHost {
			if err == nil || !strings.Contains(err.Error(), wantErr) || !strings.Contains(err.Error(), "GOPYK_SSH_CONFIG_BACKEND=openssh") {
				t.Fatalf("builtin %s: err = %v, want the loud error %q", h, err, wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("builtin %s: %v", h, err)
		}
		if os.Getenv("GOPYK_TEST_SHOW") != "" { // to eyeball a fixture: GOPYK_TEST_SHOW=1 go test -v
			for _, s := range got {
				c := *s
				c.Raw = nil
				t.Logf("%s: %+v", h, c)
			}
		}
		if d := diffRoutes(want, got); d != "" {
			t.Errorf("%s: builtin differs from ssh -G:\n%s", h, d)
		}
	}
}

// diffRoutes compares every typed field. ProxyJump is compared as parsed
// hops, because ssh -G rewrites the last hop (ssh://u@h → u@h).
func diffRoutes(want, got Route) string {
	if len(want) != len(got) {
		return fmt.Sprintf("route of %d hops (ssh -G) vs %d (builtin)", len(want), len(got))
	}
	var b strings.Builder
	for i := range want {
		w, g := *want[i], *got[i]
		w.Raw, g.Raw = nil, nil
		wj, _ := ParseJump(w.ProxyJump)
		gj, _ := ParseJump(g.ProxyJump)
		w.ProxyJump, g.ProxyJump = joinJumps(wj), joinJumps(gj)
		wv, gv := reflect.ValueOf(w), reflect.ValueOf(g)
		for f := 0; f < wv.NumField(); f++ {
			a, c := wv.Field(f).Interface(), gv.Field(f).Interface()
			if !reflect.DeepEqual(a, c) && !(isEmpty(a) && isEmpty(c)) {
				fmt.Fprintf(&b, "  hop %d %s: ssh -G %q, builtin %q\n", i, wv.Type().Field(f).Name, fmt.Sprint(a), fmt.Sprint(c))
			}
		}
	}
	return b.String()
}

func isEmpty(v any) bool {
	s, ok := v.([]string)
	return ok && len(s) == 0
}

func fixtureLocal(t *testing.T, home string) localEnv {
	l, err := currentLocalEnv()
	if err != nil {
		t.Fatal(err)
	}
	l.home = home
	return l
}

func findNSSWrapper(t *testing.T) string {
	for _, pat := range []string{"/usr/lib/*/libnss_wrapper.so", "/usr/lib/libnss_wrapper.so", "/usr/lib64/libnss_wrapper.so"} {
		if m, _ := filepath.Glob(pat); len(m) > 0 {
			return m[0]
		}
	}
	t.Fatal("the differential test needs nss_wrapper to give ssh a temporary home (ssh ignores $HOME): apt-get install libnss-wrapper")
	return ""
}

// nssEnv makes ssh see a passwd entry for our uid whose home is the fixture's.
func nssEnv(t *testing.T, lib string, l localEnv) []string {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	gr := filepath.Join(dir, "group")
	writeFile(t, pw, fmt.Sprintf("%s:x:%s:%s:gopyk test:%s:/bin/sh\n", u.Username, u.Uid, u.Gid, l.home))
	writeFile(t, gr, fmt.Sprintf("g%s:x:%s:\n", u.Gid, u.Gid))
	return []string{"LD_PRELOAD=" + lib, "NSS_WRAPPER_PASSWD=" + pw, "NSS_WRAPPER_GROUP=" + gr}
}

func TestBuiltinNoConfigFiles(t *testing.T) {
	// Nothing configured at all: OpenSSH's defaults.
	home := t.TempDir()
	local := fixtureLocal(t, home)
	b := &builtinBackend{systemFile: filepath.Join(home, "none"), local: local}
	route, err := (&resolver{be: b, local: local}).resolve(context.Background(), "Some.Host")
	if err != nil {
		t.Fatal(err)
	}
	s := route.Target()
	if s.HostName != "some.host" || s.Port != 22 || s.User != local.user || len(s.IdentityFiles) != 7 ||
		s.IdentityFiles[0] != home+"/.ssh/id_rsa" || s.StrictHostKeyChecking != "ask" || s.ServerAliveCountMax != 3 ||
		strings.Join(s.UserKnownHostsFiles, " ") != home+"/.ssh/known_hosts "+home+"/.ssh/known_hosts2" ||
		!s.PubkeyAuthentication || s.BatchMode || s.HashKnownHosts || len(s.HostKeyAlgorithms) != 16 {
		t.Fatalf("defaults: %+v", *s)
	}
	if _, err := os.Stat(home + "/.ssh"); err == nil {
		t.Fatal("resolving created ~/.ssh")
	}
}

type txtarFile struct {
	Name string
	Data []byte
}

type txtarArchive struct {
	Comment []byte
	Files   []txtarFile
}

// parseTxtar reads the txtar format ("-- name --" lines start files); it is
// small enough not to pull in golang.org/x/tools.
func parseTxtar(data []byte) txtarArchive {
	var ar txtarArchive
	cur := &ar.Comment
	for _, l := range strings.SplitAfter(string(data), "\n") {
		t := strings.TrimRight(l, "\r\n")
		if strings.HasPrefix(t, "-- ") && strings.HasSuffix(t, " --") && len(t) > 6 {
			ar.Files = append(ar.Files, txtarFile{Name: strings.TrimSpace(t[3 : len(t)-3])})
			cur = &ar.Files[len(ar.Files)-1].Data
			continue
		}
		*cur = append(*cur, l...)
	}
	return ar
}
